"""Which process of a multi-process training this is: rank 0 alone writes to and removes from
the output folder that all ranks share."""

from lightning_utilities.core.rank_zero import rank_zero_only


def is_rank_zero() -> bool:
    """Whether this process is rank 0 of its run, by Lightning's record (`rank_zero_only.rank`: set
    from the launcher's environment when Lightning is imported, then by a Trainer's strategy). A
    process that has not imported Lightning trains nothing: it is the only one, rank 0. (The
    record lives in `lightning_utilities`, which loads without Lightning.)"""
    return getattr(rank_zero_only, "rank", 0) == 0
