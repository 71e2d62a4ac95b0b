"""The study's reports: tables, HTML, the reference table, figures."""
