"""``brainclust report RUN`` run again: what an earlier ``report`` of the run was given is kept, once."""

from __future__ import annotations

import json

from explorer_fixtures import make_run, read_rows

from brainclust.cli import main


def manifest_of(out) -> dict:
    return json.loads((out / "manifest.json").read_text(encoding="utf-8"))


def write_table(path, rows: list[dict]) -> None:
    lines = [",".join(rows[0])] + [",".join(str(v) for v in r.values()) for r in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def test_the_same_metadata_table_joined_twice_is_one_entry(tmp_path, capsys):
    """A second identical `report RUN --metadata FILE` appended a second, identical metadata_added entry."""
    out = make_run(tmp_path, n_per=4, hostile=False)
    table = tmp_path / "clinical.csv"
    write_table(table, [{"path": r["path"], "arm": "AB"[i % 2]} for i, r in enumerate(read_rows(out))])
    assert main(["-q", "report", str(out), "--metadata", str(table)]) == 0
    first = manifest_of(out)["metadata_added"]
    assert len(first) == 1 and first[0]["columns"] == ["arm"]
    rows = read_rows(out)
    assert main(["-q", "report", str(out), "--metadata", str(table)]) == 0
    assert manifest_of(out)["metadata_added"] == first and read_rows(out) == rows
    assert len(first[0]["sha256"]) == 64  # the table's bytes
    write_table(table, [{"path": r["path"], "arm": "AC"[i % 2]} for i, r in enumerate(read_rows(out))])
    assert main(["-q", "report", str(out), "--metadata", str(table)]) == 0  # other content: a new entry
    added = manifest_of(out)["metadata_added"]
    assert len(added) == 2 and added[0] == first[0] and added[1]["sha256"] != first[0]["sha256"]
    assert {r["arm"] for r in read_rows(out)} == {"A", "C"}


def test_a_plain_report_keeps_the_colouring_the_last_report_was_given(tmp_path):
    """`report RUN --color-by site`, then `report RUN`: the second page was coloured by cluster again."""
    out = make_run(tmp_path, n_per=4, hostile=False)

    def colour(*options: str) -> str:
        assert main(["-q", "report", str(out), *options]) == 0
        return json.loads((out / "report.html").read_text(encoding="utf-8").split(
            '<script type="application/json" id="map-data">', 1)[1].split("</script>", 1)[0])["colour"]

    assert colour("--color-by", "site") == "site"
    assert colour() == "site" and colour() == "site"
    assert manifest_of(out)["report"]["color_by"] == "site"
    assert colour("--color-by", "flags") == "flags" and colour() == "flags"  # a new choice replaces it
    assert colour("--color-by", "") == "cluster" and "color_by" not in manifest_of(out)["report"]  # '' forgets it
    assert colour() == "cluster"
