"""The user's own data: folders of images (class folders, split folders, the anomaly layout) and
array files (images, vectors) prepared into the splits file; bad data refused in one line. All
`fast` but the `dvc repro` test."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from PIL import Image

from aevae.data import load_splits
from aevae.data.manifest import manifest_path, text_md5
from aevae.data.mnist import load_mnist_raw
from aevae.data.source import Source
from aevae.data.splits import prepare_splits, read_source, split_source
from aevae.errors import DataError
from aevae.stages import prepare
from conftest import CONF_DIR, REPO_ROOT

def prepare_cfg(*overrides: str):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name="prepare", overrides=list(overrides))


def save_png(path: Path, pixels: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)
    return path


def shapes(n: int, seed: int, size: int = 28) -> np.ndarray:
    """`n` grey images of one bright square each, at random places and sizes."""
    rng = np.random.default_rng(seed)
    images = np.zeros((n, size, size), dtype=np.uint8)
    for image in images:
        side = rng.integers(6, 12)
        top, left = rng.integers(2, size - side - 2, size=2)
        image[top : top + side, left : left + side] = 200
    return images


def grey_folder(root: Path, classes: dict[str, int], seed: int = 0) -> Path:
    for k, (name, n) in enumerate(classes.items()):
        for i, image in enumerate(shapes(n, seed + k)):
            save_png(root / name / f"{i:03d}.png", image)
    return root


def data_error(data_cfg, workers: int = 1) -> str:
    """The one-line message of the DataError that reading `data_cfg` raises."""
    with pytest.raises(DataError) as info:
        read_source(data_cfg, workers)
    message = str(info.value)
    assert "\n" not in message
    return message


# --- folders ----------------------------------------------------------------------------------


@pytest.mark.fast
def test_mnist_as_a_png_tree_prepares_to_the_built_in_tensors(tmp_path, mnist_root):
    """MNIST exported to train/<digit>/, test/<digit>/ keeps MNIST's split and, with the same
    split seed, gives the same uint8 tensors as the built-in loader on the same images."""
    raw = load_mnist_raw(mnist_root)
    picked = {}
    for split, per_class in (("train", 60), ("test", 50)):
        images, labels = raw[split]
        index = torch.cat([torch.nonzero(labels == digit).flatten()[:per_class] for digit in range(10)])
        picked[split] = (images[index], labels[index])  # ordered by class, then index: the files' order
        for i, image, label in zip(index.tolist(), images[index], labels[index].tolist()):
            save_png(tmp_path / "mnist" / split / str(label) / f"{i:05d}.png", image[0].numpy())
    cfg = prepare_cfg("data=folder", f"data.path={tmp_path / 'mnist'}")
    folder = split_source(read_source(cfg.data, workers=2), cfg.data)  # 1,100 files: two decoding processes
    built_in = split_source(Source(picked, 255), prepare_cfg("data=mnist").data)
    for split in ("train", "val", "test"):
        assert torch.equal(folder.images[split], built_in.images[split]), split
        assert torch.equal(folder.labels[split], built_in.labels[split]), split
    assert folder.images["train"].dtype == torch.uint8 and folder.image_shape == (1, 28, 28)
    assert folder.class_names == tuple("0123456789") and folder.has_labels and folder.normal_label is None
    assert len(folder.labels["test"]) == 500 and len(folder.labels["val"]) == 60


def sample_photo_crops(root: Path) -> dict[str, list[np.ndarray]]:
    """32x32 crops of scikit-learn's two sample photographs, one class folder per photograph."""
    from sklearn.datasets import load_sample_images

    bunch = load_sample_images()
    crops = {}
    for filename, photo in zip(bunch.filenames, bunch.images):
        name = Path(filename).stem
        crops[name] = [photo[r : r + 32, c : c + 32] for r in range(0, 320, 64) for c in range(0, 256, 64)]
        for i, crop in enumerate(crops[name]):
            save_png(root / name / f"{i:02d}.png", crop)
    return crops


@pytest.mark.fast
def test_colour_folder_prepares_with_three_channels_and_converts_on_request(tmp_path):
    crops = sample_photo_crops(tmp_path / "photos")
    cfg = prepare_cfg("data=folder", f"data.path={tmp_path / 'photos'}")
    splits = prepare_splits(cfg.data)
    assert splits.image_shape == (3, 32, 32) and splits.class_names == ("china", "flower")
    assert sum(len(labels) for labels in splits.labels.values()) == 40
    every = torch.cat([splits.images[s] for s in ("train", "val", "test")])
    assert any(torch.equal(image, torch.from_numpy(crops["flower"][3]).permute(2, 0, 1)) for image in every)  # PNG is lossless
    grey = prepare_splits(prepare_cfg("data=folder", f"data.path={tmp_path / 'photos'}", "data.channels=1").data)
    assert grey.image_shape == (1, 32, 32)
    small = prepare_splits(prepare_cfg("data=folder", f"data.path={tmp_path / 'photos'}", "data.image_size=16", "data.resize=bicubic").data)
    assert small.image_shape == (3, 16, 16)


@pytest.mark.fast
def test_anomaly_layout_gives_the_normal_class_and_the_defects(tmp_path):
    root = tmp_path / "part"
    for i, image in enumerate(shapes(20, 0)):
        save_png(root / "train" / "good" / f"{i:03d}.png", image)
    for i, image in enumerate(shapes(12, 1)):
        defect = ("good", "scratch", "blob")[i % 3]
        if defect == "scratch":
            image[4:24, 14] = 255
        if defect == "blob":
            yy, xx = np.ogrid[:28, :28]
            image[(yy - 20) ** 2 + (xx - 8) ** 2 <= 9] = 255
            save_png(root / "ground_truth" / defect / f"{i:03d}_mask.png", np.zeros((28, 28), np.uint8))
        save_png(root / "test" / defect / f"{i:03d}.png", image)
    source = read_source(prepare_cfg("data=folder", f"data.path={root}").data)
    assert "ignored 4 images in ground_truth/" in " ".join(source.notes)
    splits = split_source(source, prepare_cfg("data=folder").data)
    assert splits.class_names == ("blob", "good", "scratch") and splits.normal_label == 1
    assert set(splits.labels["train"].tolist()) == set(splits.labels["val"].tolist()) == {1}
    assert torch.bincount(splits.labels["test"]).tolist() == [4, 4, 4]
    assert len(splits.labels["train"]) + len(splits.labels["val"]) == 20


@pytest.mark.fast
def test_flat_folder_is_unlabelled_and_skips_hidden_and_other_files_with_a_count(tmp_path, capsys):
    root = tmp_path / "flat"
    for i, image in enumerate(shapes(10, 0)):
        save_png(root / f"{i:02d}.png", image)
    (root / ".DS_Store").write_bytes(b"\0\1")
    (root / ".cache").mkdir()
    save_png(root / ".cache" / "thumb.png", shapes(1, 5)[0])
    (root / "notes.txt").write_text("scanned on Monday")
    output = tmp_path / "out" / "flat.pt"
    prepare.run(prepare_cfg("data=folder", f"data.path={root}", f"output={output}"))
    line = capsys.readouterr().out.strip()
    assert "skipped 2 hidden files or folders" in line and "skipped 1 files that are not PNG, JPEG, BMP or TIFF images (first: notes.txt)" in line
    splits = load_splits(output)
    assert not splits.has_labels and all(labels.eq(-1).all() for labels in splits.labels.values())
    assert sum(len(labels) for labels in splits.labels.values()) == 10
    manifest = manifest_path(output)
    entries = json.loads(manifest.read_text())["files"]
    assert [entry["path"] for entry in entries] == [f"{i:02d}.png" for i in range(10)]
    assert entries[0]["size"] == (root / "00.png").stat().st_size
    assert splits.source == str(root) and splits.manifest_md5 == text_md5(manifest.read_text())


@pytest.mark.fast
def test_split_folders_keep_their_split_and_read_every_format(tmp_path):
    root = tmp_path / "scans"
    images = shapes(16, 0)
    for i, image in enumerate(images):
        split, suffix = ("train", "val", "test", "train")[i % 4], (".png", ".bmp", ".tif", ".jpg")[i % 4]
        save_png(root / split / f"{i:02d}{suffix}", image)
    save_png(root / "train" / "sixteen.png", (images[0].astype(np.uint16) * 257))  # 16-bit grey: its high byte
    splits = prepare_splits(prepare_cfg("data=folder", f"data.path={root}").data)
    assert [len(splits.labels[name]) for name in ("train", "val", "test")] == [9, 4, 4] and not splits.has_labels
    assert torch.equal(splits.images["train"][-1, 0], torch.from_numpy(images[0]))  # sixteen.png, sorted last
    assert torch.equal(splits.images["test"][0, 0], torch.from_numpy(images[2]))  # lossless TIFF
    save_png(root / "stray.png", images[1])
    message = data_error(prepare_cfg("data=folder", f"data.path={root}").data)
    assert message.startswith(f"{root / 'stray.png'}: an image beside the split folders test, train, val")


@pytest.mark.fast
def test_a_built_in_data_sets_file_keeps_its_keys(tmp_path):
    """The keys of the user's data are written only where set: digits' file is what it was."""
    from aevae.data import save_splits
    from aevae.io import load_tensors

    payload = load_tensors(save_splits(prepare_splits(prepare_cfg("data=digits").data), tmp_path / "digits.pt"))
    assert set(payload) == {"dataset", "max_level", *(f"{split}_{kind}" for split in ("train", "val", "test") for kind in ("images", "labels"))}


# --- array files ------------------------------------------------------------------------------


@pytest.mark.fast
def test_breast_cancer_table_prepares_as_standardised_vectors(tmp_path):
    from sklearn.datasets import load_breast_cancer

    table = load_breast_cancer()
    np.savez(tmp_path / "cancer.npz", x=table.data, y=table.target)
    output = tmp_path / "cancer.pt"
    prepare.run(prepare_cfg("data=arrays", f"data.path={tmp_path / 'cancer.npz'}", f"output={output}"))
    splits = load_splits(output)
    assert splits.is_vectors and splits.image_shape == (30,) and splits.images["test"].dtype == torch.float32
    assert sum(len(labels) for labels in splits.labels.values()) == 569 and splits.has_labels
    train = splits.images["train"].double()
    assert train.mean(0).abs().max() < 1e-5 and (train.std(0, correction=0) - 1).abs().max() < 1e-4
    assert torch.equal(splits.scaled("test"), splits.images["test"])
    every = torch.cat([splits.images[name] for name in ("train", "val", "test")]).double()
    raw = every * splits.feature_std.double() + splits.feature_mean.double()  # the table's units come back
    assert torch.allclose(raw.sort(0).values, torch.from_numpy(np.sort(table.data, axis=0)), rtol=1e-5, atol=1e-6)


@pytest.mark.fast
def test_array_images_in_either_layout_and_a_given_split_prepare_alike(tmp_path):
    images = shapes(30, 0)
    split = np.array(["train"] * 20 + ["val"] * 4 + ["test"] * 6)
    np.savez(tmp_path / "last.npz", x=images[..., None], y=np.arange(30) % 3, split=split)
    np.savez(tmp_path / "first.npz", x=images[:, None] / 255.0, y=np.arange(30) % 3, split=split)
    last, first = (prepare_splits(prepare_cfg("data=arrays", f"data.path={tmp_path / name}.npz").data) for name in ("last", "first"))
    for name in ("train", "val", "test"):
        assert torch.equal(last.images[name], first.images[name]) and torch.equal(last.labels[name], first.labels[name])
    assert [len(last.labels[name]) for name in ("train", "val", "test")] == [20, 4, 6]
    assert torch.equal(last.images["test"][:, 0], torch.from_numpy(images[24:]))
    np.save(tmp_path / "plain.npy", images)
    plain = prepare_splits(prepare_cfg("data=arrays", f"data.path={tmp_path / 'plain.npy'}", "data.channels=3").data)
    assert plain.image_shape == (3, 28, 28) and not plain.has_labels


# --- bad data: one line naming the file or key, nothing written -------------------------------


@pytest.mark.fast
def test_truncated_png_is_named(tmp_path):
    root = grey_folder(tmp_path / "d", {"a": 3, "b": 3})
    target = root / "b" / "001.png"
    target.write_bytes(target.read_bytes()[:60])
    assert data_error(prepare_cfg("data=folder", f"data.path={root}").data).startswith(f"{target}: not a readable PNG, JPEG, BMP or TIFF image")


@pytest.mark.fast
def test_garbage_bytes_with_an_image_name_are_named(tmp_path):
    root = grey_folder(tmp_path / "d", {"a": 3, "b": 3})
    target = root / "a" / "002.jpg"
    target.write_bytes(bytes(range(256)) * 4)
    message = data_error(prepare_cfg("data=folder", f"data.path={root}").data)
    assert message.startswith(f"{target}: not a readable") and "replace or remove the file" in message


@pytest.mark.fast
def test_empty_folder_is_refused(tmp_path):
    (tmp_path / "empty" / "cats").mkdir(parents=True)
    (tmp_path / "empty" / "readme.md").write_text("nothing yet")
    message = data_error(prepare_cfg("data=folder", f"data.path={tmp_path / 'empty'}").data)
    assert message.startswith(f"{tmp_path / 'empty'}: no PNG, JPEG, BMP or TIFF images")


@pytest.mark.fast
def test_mixed_channels_are_refused_unless_data_channels_converts(tmp_path):
    root = grey_folder(tmp_path / "d", {"a": 4, "b": 4})
    save_png(root / "b" / "colour.png", np.stack([shapes(1, 9)[0]] * 3, axis=-1))
    message = data_error(prepare_cfg("data=folder", f"data.path={root}").data)
    assert message.startswith(f"{root / 'b' / 'colour.png'}: colour among 8 grey and 1 colour images") and "data.channels=1" in message
    assert prepare_splits(prepare_cfg("data=folder", f"data.path={root}", "data.channels=3").data).image_shape == (3, 28, 28)


@pytest.mark.fast
def test_mixed_sizes_are_refused_unless_data_image_size_resizes(tmp_path):
    root = grey_folder(tmp_path / "d", {"a": 4, "b": 4})
    save_png(root / "a" / "wide.png", np.zeros((20, 40), np.uint8))
    message = data_error(prepare_cfg("data=folder", f"data.path={root}").data)
    assert message.startswith(f"{root / 'a' / 'wide.png'}: 40x20 pixels where most images have 28x28") and "data.image_size" in message
    assert prepare_splits(prepare_cfg("data=folder", f"data.path={root}", "data.image_size=16").data).image_shape == (1, 16, 16)


@pytest.mark.fast
def test_class_folder_with_one_image_is_refused(tmp_path):
    root = grey_folder(tmp_path / "d", {"a": 4, "b": 1})
    assert data_error(prepare_cfg("data=folder", f"data.path={root}").data).startswith(f"{root / 'b'}: a class folder with one image")


@pytest.mark.fast
def test_npz_without_x_or_with_a_wrong_shape_is_refused(tmp_path):
    np.savez(tmp_path / "images.npz", images=shapes(5, 0))
    message = data_error(prepare_cfg("data=arrays", f"data.path={tmp_path / 'images.npz'}").data)
    assert message.startswith(f"{tmp_path / 'images.npz'}: no array `x` (found images)")
    np.savez(tmp_path / "five.npz", x=np.zeros((4, 2, 8, 8, 3), np.uint8))
    assert "x has shape (4, 2, 8, 8, 3)" in data_error(prepare_cfg("data=arrays", f"data.path={tmp_path / 'five.npz'}").data)
    np.savez(tmp_path / "square.npz", x=np.zeros((4, 3, 8, 3), np.uint8))
    assert "channels (1 or 3) either second" in data_error(prepare_cfg("data=arrays", f"data.path={tmp_path / 'square.npz'}").data)
    np.savez(tmp_path / "bright.npz", x=np.full((4, 8, 8), 2.0))
    assert "floats outside [0, 1]" in data_error(prepare_cfg("data=arrays", f"data.path={tmp_path / 'bright.npz'}").data)
    np.savez(tmp_path / "labels.npz", x=np.zeros((4, 8, 8), np.uint8), y=np.zeros(3, np.int64))
    assert "y has shape (3,), x has 4 rows" in data_error(prepare_cfg("data=arrays", f"data.path={tmp_path / 'labels.npz'}").data)


@pytest.mark.fast
def test_split_with_unknown_names_is_refused(tmp_path):
    np.savez(tmp_path / "s.npz", x=np.zeros((4, 8, 8), np.uint8), split=np.array(["train", "train", "valid", "test"]))
    message = data_error(prepare_cfg("data=arrays", f"data.path={tmp_path / 's.npz'}").data)
    assert message == f"{tmp_path / 's.npz'}: split holds unknown names 'valid'; use train, val and test"


@pytest.mark.fast
def test_truncated_array_file_is_named(tmp_path):
    np.savez(tmp_path / "t.npz", x=shapes(20, 0))
    data = (tmp_path / "t.npz").read_bytes()
    (tmp_path / "t.npz").write_bytes(data[: len(data) // 2])
    assert data_error(prepare_cfg("data=arrays", f"data.path={tmp_path / 't.npz'}").data).startswith(f"{tmp_path / 't.npz'}: not a readable .npz or .npy file")


@pytest.mark.fast
def test_prepare_cli_refuses_bad_data_in_one_line_and_keeps_the_previous_files(tmp_path):
    root = grey_folder(tmp_path / "d", {"a": 4, "b": 4})
    output = tmp_path / "out" / "folder.pt"
    prepare.run(prepare_cfg("data=folder", f"data.path={root}", f"output={output}"))
    before = {path: path.read_bytes() for path in (output, manifest_path(output))}
    save_png(root / "a" / "new.png", shapes(1, 7)[0])
    target = root / "b" / "002.png"
    target.write_bytes(target.read_bytes()[:50])
    result = subprocess.run(
        [sys.executable, "pipelines/prepare.py", "data=folder", f"data.path={root}", f"output={output}", f"hydra.run.dir={tmp_path / 'h'}"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines() == [result.stderr.strip()] and result.stderr.startswith(f"error: {target}: not a readable")
    assert {path: path.read_bytes() for path in before} == before
    assert sorted(path.name for path in output.parent.iterdir()) == ["folder.manifest.json", "folder.pt"]  # no temporary file left


@pytest.mark.fast
def test_config_refuses_what_the_data_set_cannot_use(tmp_path):
    from aevae.config import validate
    from aevae.errors import ConfigError

    with pytest.raises(ConfigError, match=r"^data\.path: data=folder needs a folder of images$"):
        validate(prepare_cfg("data=folder"))
    with pytest.raises(ConfigError, match=r"^data\.image_size: applies to data=folder or data=arrays"):
        validate(prepare_cfg("data=mnist", "data.image_size=32"))
    with pytest.raises(ConfigError, match=r"^data\.channels: must be 1 \(grey\), 3 \(colour\) or null"):
        validate(prepare_cfg("data=folder", f"data.path={tmp_path}", "data.channels=2"))
    with pytest.raises(ConfigError, match=r"^data\.path: the built-in digits reads no files"):
        validate(prepare_cfg("data=digits", f"data.path={tmp_path}"))


@pytest.mark.slow
def test_dvc_reruns_prepare_exactly_when_a_file_of_the_folder_changes(tmp_path):
    """`dvc repro prepare` in a git repository holding the project: one PNG added re-runs it,
    nothing touched re-runs nothing, a broken PNG stops it with the previous files in place."""
    from conftest import copy_project, run_command, set_params, study_env

    repo, env = tmp_path / "repo", study_env()
    copy_project(repo)
    root = grey_folder(repo / "data" / "raw" / "shapes", {"a": 5, "b": 5})
    set_params(repo / "params.yaml", {"data.name": "folder", "data.path": "data/raw/shapes"})
    for args in (["git", "init", "-q"], ["git", "add", "-A"], ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "own data"]):
        run_command(args, repo, env)
    assert "Running stage 'prepare'" in run_command(["dvc", "repro", "prepare"], repo, env)
    prepared = repo / "data" / "prepared" / "folder.pt"
    assert sum(len(labels) for labels in load_splits(prepared).labels.values()) == 10
    assert "Running stage 'prepare'" not in run_command(["dvc", "repro", "prepare"], repo, env)

    save_png(root / "b" / "extra.png", shapes(1, 9)[0])
    assert "Running stage 'prepare'" in run_command(["dvc", "repro", "prepare"], repo, env)
    assert sum(len(labels) for labels in load_splits(prepared).labels.values()) == 11
    assert "extra.png" in manifest_path(prepared).read_text()
    assert "Running stage 'prepare'" not in run_command(["dvc", "repro", "prepare"], repo, env)

    before = prepared.read_bytes()
    target = root / "a" / "001.png"
    target.write_bytes(target.read_bytes()[:50])
    broken = subprocess.run(["dvc", "repro", "prepare"], cwd=repo, env=env, capture_output=True, text=True, timeout=600)
    assert broken.returncode != 0 and f"error: {Path('data/raw/shapes/a/001.png')}: not a readable" in broken.stdout + broken.stderr
    assert prepared.read_bytes() == before
