"""The public API: every name in medsearch.__all__ resolves, importing the package stays cheap, and the README's
Python example runs as printed and gives sensible answers on the bundled demo data."""
import re
import subprocess
import sys
from pathlib import Path

import pytest

import medsearch

REPO = Path(__file__).resolve().parents[1]


def test_every_public_name_resolves_and_has_a_docstring():
    for name in medsearch.__all__:
        obj = getattr(medsearch, name)
        assert obj.__doc__, name
    with pytest.raises(AttributeError):
        medsearch.no_such_name  # noqa: B018


@pytest.mark.parametrize("module", ["medsearch", "medsearch.cli"])
def test_import_does_not_load_the_heavy_libraries(module):
    code = (f"import sys, {module}; heavy = [m for m in ('torch', 'faiss', 'sklearn', 'h5py') if m in sys.modules]; "
            "print(','.join(heavy))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def _readme_example() -> str:
    text = (REPO / "README.md").read_text()
    section = text[text.index("### Python API"):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_readme_example_runs_and_answers_sensibly(tmp_path):
    (tmp_path / "example.py").write_text(_readme_example())
    run = subprocess.run([sys.executable, "example.py"], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    out = run.stdout
    assert "780 rows; 780 embedded" in out
    ranks = re.findall(r"^(\d) (0\.\d{3}) \[", out, re.M)
    assert [int(r) for r, _ in ranks] == [1, 2, 3, 4, 5]
    sims = [float(s) for _, s in ranks]
    assert sims == sorted(sims, reverse=True)
    vote = re.search(r"^vote: (\{.*\})$", out, re.M).group(1)
    assert abs(sum(eval(vote).values()) - 1.0) < 1e-3  # the vote's shares sum to one
    auc, lo, hi = map(float, re.search(r"LR AUC ([\d.]+) \[([\d.]+), ([\d.]+)\]", out).groups())
    assert lo <= auc <= hi and auc > 0.75  # real ImageNet features separate BreastMNIST well above chance
    accuracy = float(re.search(r"k-NN accuracy on the last rows: ([\d.]+)", out).group(1))
    assert accuracy > 0.73  # above always answering the majority class ("normal, benign", 73% of BreastMNIST)
