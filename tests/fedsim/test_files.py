"""Datasets from files (csv, npz, image-folder) and the natural partition by client id."""

import numpy as np
import pytest
import tomli_w

import fedsim
from fedsim.cli import main
from fedsim.data import clear_dataset_cache, load_dataset
from fedsim.errors import DataError
from fedsim.runtime.build import load_data, make_partitions

CLIENTS = ["ann", "bob", "cy", "dee", "eve"]


@pytest.fixture(autouse=True)
def fresh_cache():
    clear_dataset_cache()
    yield
    clear_dataset_cache()


def write_csv(path, n=300, seed=0):
    """Blobs with a label per row and a client column; each client skewed to two labels."""
    rng = np.random.default_rng(seed)
    means = rng.normal(0, 3, (3, 4))
    lines = ["f0,f1,label,f2,client,f3"]
    counts = {}
    for i in range(n):
        client = CLIENTS[i % len(CLIENTS)]
        y = (i % len(CLIENTS) + rng.integers(0, 2)) % 3
        x = means[y] + rng.normal(0, 1, 4)
        lines.append(f"{x[0]:.4f},{x[1]:.4f},c{y},{x[2]:.4f},{client},{x[3]:.4f}")
        counts[client] = counts.get(client, 0) + 1
    path.write_text("\n".join(lines) + "\n")
    return counts


def scenario_doc(**data):
    return {
        "name": "files",
        "rounds": 2,
        "data": {"partition": "natural", **data},
        "model": {"name": "mlp"},
        "clients": {"count": len(CLIENTS), "per_round": 2},
    }


def test_csv_with_client_column_runs_natural(tmp_path, monkeypatch):
    folder = tmp_path / "exp"
    folder.mkdir()
    write_csv(folder / "data.csv")
    path = folder / "s.toml"
    path.write_text(tomli_w.dumps(scenario_doc(dataset="csv", path="data.csv")))
    monkeypatch.chdir(tmp_path)  # data.path is relative to the scenario file, not the cwd
    sc = fedsim.load_scenario(path)
    ds = load_data(sc)
    assert ds.input_shape == (4,) and ds.num_classes == 3
    assert ds.num_train + ds.num_test == 300 and ds.groups is not None
    parts = make_partitions(sc, ds)
    ids = sorted(set(ds.groups))
    assert [len(p) for p in parts] == [int((ds.groups == g).sum()) for g in ids]
    for p, g in zip(parts, ids, strict=True):
        assert set(ds.groups[p]) == {g}
    result = fedsim.run(sc)
    assert result.summary["rounds"] == 2 and result.summary["final_accuracy"] is not None
    assert {r["client"] for r in result.traffic} <= set(range(len(CLIENTS)))


@pytest.mark.parametrize(
    ("data", "count", "expect"),
    [
        ({}, 4, "clients.count: the data has 5 client ids"),
        ({"options": {"client": "writer"}}, 5, "no column 'writer' (data.options.client"),
        ({"options": {"label": "y"}}, 5, "no column 'y' (data.options.label"),
        ({"options": {"colour": 1}}, 5, "data.options.colour: dataset csv has no option"),
        ({"path": "missing.csv"}, 5, "data.path:"),
    ],
)
def test_csv_errors_are_one_line(tmp_path, capsys, data, count, expect):
    write_csv(tmp_path / "data.csv")
    doc = scenario_doc(dataset="csv", path="data.csv")
    doc["data"].update(data)
    doc["clients"]["count"] = count
    (tmp_path / "s.toml").write_text(tomli_w.dumps(doc))
    assert main(["validate", str(tmp_path / "s.toml")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and expect in err and "s.toml" in err, err


def test_bad_csv_cells_name_file_line_and_column(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("a,b,label\n1,2,0\n3,x,1\n")
    with pytest.raises(DataError, match=r"d.csv: line 3, column 'b': 'x' is not a number"):
        load_dataset("csv", path=str(path))
    path.write_text("a,b,label\n1,2,0\n3,1\n")
    with pytest.raises(DataError, match="d.csv: line 3 has 2 fields"):
        load_dataset("csv", path=str(path))


def test_natural_needs_client_ids(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("a,label\n" + "".join(f"{i},{i % 2}\n" for i in range(40)))
    (tmp_path / "s.toml").write_text(
        tomli_w.dumps(
            scenario_doc(dataset="csv", path=str(path)) | {"clients": {"count": 2, "per_round": 1}}
        )
    )
    with pytest.raises(fedsim.FedsimError, match="natural needs a client id"):
        fedsim.run(tmp_path / "s.toml")


def test_npz_images_with_client_array(tmp_path):
    rng = np.random.default_rng(1)
    x = rng.integers(0, 256, (120, 8, 8), dtype=np.uint8)
    y = np.arange(120) % 3 + 5  # labels renumbered to 0..2
    np.savez(tmp_path / "d.npz", x=x, y=y, client=np.arange(120) % 4)
    ds = load_dataset("npz", path=str(tmp_path / "d.npz"))
    assert ds.input_shape == (1, 8, 8) and ds.num_classes == 3
    assert float(ds.x_train.max()) <= 1.0 and set(np.unique(ds.y_train)) == {0, 1, 2}
    assert sorted(set(ds.groups)) == [0, 1, 2, 3] and len(ds.groups) == ds.num_train
    np.savez(tmp_path / "bad.npz", x=x, y=y[:10])
    with pytest.raises(DataError, match="bad.npz: y has 10 entries, x has 120"):
        load_dataset("npz", path=str(tmp_path / "bad.npz"))
    np.savez(tmp_path / "obj.npz", x=np.array([{"a": 1}], dtype=object), y=y[:1])
    with pytest.raises(DataError, match="obj.npz: not a readable .npz"):
        load_dataset("npz", path=str(tmp_path / "obj.npz"))
    np.savez(tmp_path / "keys.npz", a=x)
    with pytest.raises(DataError, match="keys.npz: needs arrays x and y"):
        load_dataset("npz", path=str(tmp_path / "keys.npz"))


def test_image_folder_with_client_folders(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(2)
    for client in ("w1", "w2", "w3"):
        for cls in ("cat", "dog"):
            folder = tmp_path / "imgs" / client / cls
            folder.mkdir(parents=True)
            for i in range(5):
                px = rng.integers(0, 256, (6, 5, 3), dtype=np.uint8)
                Image.fromarray(px).save(folder / f"{i}.png")
    doc = scenario_doc(
        dataset="image-folder", path=str(tmp_path / "imgs"), options={"clients": True}
    )
    doc["clients"] = {"count": 3, "per_round": 2}
    doc["rounds"] = 1
    sc = fedsim.load_scenario(doc_file(tmp_path, doc))
    ds = load_data(sc)
    assert ds.input_shape == (3, 6, 5) and ds.num_classes == 2 and ds.num_train + ds.num_test == 30
    assert [len(p) for p in make_partitions(sc, ds)] == [
        int((ds.groups == c).sum()) for c in ("w1", "w2", "w3")
    ]
    assert fedsim.run(sc).summary["rounds"] == 1
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / "imgs" / "w1" / "cat" / "z.png")
    clear_dataset_cache()
    with pytest.raises(DataError, match=r"z.png: 4x4 pixels, other images are 5x6"):
        load_data(sc)
    gray = load_dataset(
        "image-folder",
        path=str(tmp_path / "imgs"),
        clients=True,
        grayscale=True,
        size=[4, 4],
    )
    assert gray.input_shape == (1, 4, 4)


def doc_file(tmp_path, doc):
    path = tmp_path / "s.toml"
    path.write_text(tomli_w.dumps(doc))
    return path
