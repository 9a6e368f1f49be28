"""`dense-reward explain` end to end on the tiny config, and the heatmap renderers."""

from __future__ import annotations

import numpy as np
import pytest

from dense_reward.viz import HeatmapSection, heatmap_page, terminal_heatmap, token_labels, write_heatmap_png
from tests.support.paths import TINY_CONFIG
from tune_jobs.cli import main


def test_token_labels_mark_empty_spans() -> None:
    assert token_labels("hi there", [(0, 2), (2, 8), (8, 8)]) == ["hi", " there", "⟨eos⟩"]


def test_terminal_heatmap_colours_by_sign() -> None:
    coloured = terminal_heatmap(["good", " bad"], np.array([1.0, -0.5]))
    assert "\x1b[48;2;44;160;44m" in coloured  # full green for the largest positive
    assert "48;2;234;147;148" in coloured  # half-way from white to red
    assert terminal_heatmap(["a", "b"], np.array([0.5, -1.0]), colour=False) == "a[+0.5] b[-1]"
    with pytest.raises(ValueError, match="2 tokens but 1 values"):
        terminal_heatmap(["a", "b"], np.array([1.0]))


def test_heatmap_page_escapes_and_titles(tmp_path) -> None:
    section = HeatmapSection("<prompt>", ["<b>", "\n"], {"shap": np.array([0.2, -0.1])}, extra={"reward": "0.3"})
    page = heatmap_page([section])
    assert "&lt;b&gt;" in page and "<b>" not in page.split("<body>")[1]
    assert 'title="+0.2"' in page and "⏎" in page and "reward: 0.3" in page
    png = write_heatmap_png(tmp_path / "heat.png", section)
    assert png.read_bytes()[:4] == b"\x89PNG"


@pytest.mark.timeout(300)
def test_explain_prints_every_source_and_writes_html(tmp_path, capsys) -> None:
    html = tmp_path / "explain.html"
    code = main(
        [
            "explain",
            "--config", str(TINY_CONFIG),
            "--prompt", "How was your day?",
            "--response", "It was great, thanks!",
            "--weights", '{"attention": 0.8, "sparse": 0.2}',
            "--html", str(html),
            "--color", "never",
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    for source in ["sparse", "attention", "redistribution", "shap", "lime", "dense"]:
        assert source in out
    assert "weights: attention=0.8, sparse=0.2" in out
    # The dense row sums to r, and the printout says so with the same number.
    reward = float(out.split("reward r = ")[1].split()[0])
    total = float(out.split("sum of dense = ")[1].split()[0])
    assert total == pytest.approx(reward, abs=1e-5)
    assert "⟨eos⟩" in out
    tokens = int(out.split(" policy tokens")[0].split("\n")[-1])
    page = html.read_text()
    assert page.count('class="tok"') == 6 * tokens  # five sources and the dense row
    assert "How was your day?" in page and "dense" in page


def test_explain_rejects_bad_weights(capsys) -> None:
    base = ["explain", "--config", str(TINY_CONFIG), "--prompt", "p", "--response", "r"]
    assert main([*base, "--weights", "{not json"]) == 2
    assert "--weights: not valid JSON" in capsys.readouterr().err
    assert main([*base, "--weights", '{"sparse": 0.5}']) == 2
    assert "must sum to 1" in capsys.readouterr().err


@pytest.mark.timeout(300)
def test_explain_shows_the_integrated_gradients_and_log_ratio_sources(tmp_path, capsys) -> None:
    import yaml

    from tests.support.sources import LOG_RATIO_SECTION

    config = yaml.safe_load(TINY_CONFIG.read_text())
    config["shaping"]["sources"] = ["sparse", "integrated_gradients", "attention"]
    config["shaping"]["integrated_gradients"] = {"n_steps": 4}
    config["shaping"]["log_ratio"] = LOG_RATIO_SECTION
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    html = tmp_path / "explain.html"
    weights = '{"integrated_gradients": 0.5, "log_ratio": 0.5}'
    argv = ["explain", "--config", str(path), "--prompt", "How was your day?", "--response", "It was great, thanks!"]
    assert main([*argv, "--weights", weights, "--html", str(html), "--color", "never"]) == 0
    out = capsys.readouterr().out
    assert "weights: integrated_gradients=0.5, log_ratio=0.5" in out
    lines = out.split("reward r = ")[1].splitlines()  # after any build progress of the built-in models
    rows = [line.split()[0] for line in lines[3:8]]  # after the reward, token count and a blank line
    # attention is read off the scoring forward, so its row comes first
    assert rows == ["attention", "sparse", "integrated_gradients", "log_ratio", "dense"]
    reward = float(out.split("reward r = ")[1].split()[0])
    assert float(out.split("sum of dense = ")[1].split()[0]) == pytest.approx(reward, abs=1e-5)
    page = html.read_text()
    assert "integrated_gradients" in page and "log_ratio" in page
