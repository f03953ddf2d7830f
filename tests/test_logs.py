"""Training logs: both reference formats and ours read to the same rows, the comparison table and its figures."""

from __future__ import annotations

import json

import matplotlib
import pytest

from deeplab import viz
from deeplab.__main__ import main
from deeplab.commands.compare_logs import compare_logs_command
from deeplab.logs import (
    LogError,
    LogRecord,
    comparison_table,
    losses_at,
    nearest,
    read_our_log,
    read_reference_log,
    spread,
)

matplotlib.use("Agg")

STAMP = "2020-11-20 10:11:12 INFO     "  # logging's '%(asctime)s %(levelname)-8s %(message)s'
EPOCHS, BATCHES = 3, 7  # 21 steps, a line every 5: at steps 5, 10, 15, 20


def lr_at(step: int) -> float:
    return 0.01 * (1 - (step - 1) / 21) ** 0.9


def write_2020_log(path, *, header: str = "[EPOCH]: {e}/{E}, [BATCH]: {b}/{n}, [LEARNING_RATE]: {lr}, [DATASET]: voc"):
    """A log as the 2020 trainer writes it, with the lines around the training ones that are not."""
    lines = [
        f"{STAMP}Dataset used: VOCAugDataset, Number of images: 10582",
        f"{STAMP}Model Used: deeplabv3plus, Backbone used: resnet50",
        "2020-11-20 10:11:12 WARNING  ngpus_per_node is not equal to nproc_per_node",
    ]
    step = 0
    for epoch in range(1, EPOCHS + 1):
        lines.append(f"{STAMP}Start epoch {epoch}...")
        for batch in range(1, BATCHES + 1):
            step += 1
            if step % 5 == 0:
                lines.append(STAMP + header.format(e=epoch, E=EPOCHS, b=batch, n=BATCHES, lr=lr_at(step)))
                lines.append(
                    f"\t[LOSS]: loss_aux {0.4 - step / 100:.4f}, loss_cls {2 - step / 50:.4f}, total 9.{step:04d}, "
                )
    lines.append(f"{STAMP}[EPOCH]: 3/3, [BATCH]: 7/7, [LEARNING_RATE]: 0.001, [DATASET]: voc")  # no [LOSS] below
    lines.append(f"{STAMP}All Finished, all_preds: 1449, all_gts: 1449")
    path.write_text("\n".join(lines) + "\n")
    return path


def dict_line(step: int, total_key: str = "loss_total") -> str:
    record = {
        "cur_epoch": (step - 1) // BATCHES + 1, "max_epochs": EPOCHS, "cur_iter": step, "max_iters": 21,
        "cur_iter_in_cur_epoch": (step - 1) % BATCHES + 1, "max_iters_in_cur_epoch": BATCHES,
        "segmentor": "Deeplabv3Plus", "backbone": "resnet50conv3x3stem", "dataset": "VOCDataset",
        "learning_rate": lr_at(step), "loss_aux": 0.4 - step / 1000, "loss_cls": 2 - step / 300, total_key: 3 + step,
    }  # fmt: skip
    return f"2023-10-30 09:12:45 INFO  {record!r}"


def write_1x_log(path, *, total_key: str = "loss_total"):
    lines = [
        "2023-10-30 09:12:40 INFO  Config file path: ssseg/configs/deeplabv3plus/deeplabv3plus_resnet50os8_voc.py",
        "2023-10-30 09:12:40 INFO  Config details: ",
        "{'type': 'Deeplabv3Plus', 'num_classes': 21, 'cur_iter': 3, 'norm_cfg': {'type': 'SyncBatchNorm'}}",
        "{'backbone': <class 'ResNet'>, 'losses': {'loss_cls': {'type': 'CrossEntropyLoss'}}}",
        *(dict_line(step, total_key) for step in (5, 10, 15)),
        "2023-10-30 09:20:00 INFO  Evaluate Deeplabv3Plus at epoch 3",
        "2023-10-30 09:21:00 INFO  {'all_acc': np.float64(0.93), 'mIoU': np.float64(0.77)}",
        "2023-10-30 09:21:00 INFO  {'all_acc': 0.93, 'mIoU': 0.77, 'cur_iter': 21}",
        dict_line(20, total_key),
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_the_2020_format_maps_epoch_and_batch_to_the_global_step(tmp_path):
    rows = read_reference_log(write_2020_log(tmp_path / "deeplabv3plus_resnet50os8_voc_train.log"))
    assert [row.iteration for row in rows] == [5, 10, 15, 20]  # e.g. epoch 2, batch 3 of 7 is step 10
    assert rows[1] == LogRecord(10, lr_at(10), 9.001, loss_cls=1.8, loss_aux=0.3)


def test_the_2022_variant_of_the_2020_format(tmp_path):
    header = (
        "[Epoch]: {e}/{E}, [Batch]: {b}/{n}, [Segmentor]: deeplabv3plus-resnet, [DATASET]: voc, [LEARNING_RATE]: {lr}"
    )
    rows = read_reference_log(write_2020_log(tmp_path / "x.log", header=header))
    assert [(row.iteration, row.lr, row.total) for row in rows] == [
        (s, lr_at(s), 9 + s / 10000) for s in (5, 10, 15, 20)
    ]


@pytest.mark.parametrize("total_key", ["total", "loss_total"])
def test_the_1x_dicts_and_nothing_else(tmp_path, total_key):
    rows = read_reference_log(write_1x_log(tmp_path / "deeplabv3plus_resnet50os8_voc.log", total_key=total_key))
    assert [row.iteration for row in rows] == [5, 10, 15, 20]
    assert rows[2] == LogRecord(15, lr_at(15), 18, loss_cls=2 - 15 / 300, loss_aux=0.4 - 15 / 1000)


def test_a_resumed_log_keeps_the_later_line_of_an_iteration(tmp_path):
    path = tmp_path / "resumed.log"
    path.write_text(
        "\n".join([dict_line(5), dict_line(10), dict_line(5).replace("'loss_total': 8", "'loss_total': 7")])
    )
    assert [(row.iteration, row.total) for row in read_reference_log(path)] == [(5, 7), (10, 13)]


def test_a_file_without_training_lines_gives_one_line_naming_it(tmp_path):
    path = tmp_path / "notes.log"
    path.write_text("hello\n{'mIoU': 0.7}\n[EPOCH]: 1/2, [LEARNING_RATE]: 0.01\n\t[LOSS]: total 1.0, \n")  # no [BATCH]
    with pytest.raises(LogError, match="notes.log: no training line of the reference's logs found") as error:
        read_reference_log(path)
    assert "\n" not in str(error.value) and "pass a training log of sssegmentation" in str(error.value)
    with pytest.raises(LogError, match="missing.log: no such file"):
        read_reference_log(tmp_path / "missing.log")


@pytest.mark.parametrize("cut", [16, 40])  # inside 'total 9.0020', inside loss_cls's value
def test_a_log_cut_short_names_the_file_and_line_of_the_broken_record(tmp_path, cut):
    path = write_2020_log(tmp_path / "killed.log")
    lines = path.read_text().splitlines()
    last_loss = max(number for number, line in enumerate(lines) if line.startswith("\t[LOSS]:"))
    path.write_text("\n".join([*lines[:last_loss], lines[last_loss][:-cut]]) + "\n")  # as a killed job leaves it
    with pytest.raises(LogError, match=rf"killed.log, line {last_loss + 1}: a training record with") as error:
        read_reference_log(path)
    assert "\n" not in str(error.value) and "delete that line" in str(error.value)
    path.write_text("\n".join([dict_line(5), dict_line(10).replace("'learning_rate'", "'lr'")]))
    with pytest.raises(LogError, match=r"line 2: a training record without 'learning_rate'"):
        read_reference_log(path)


def write_our_log(path, records):
    path.write_text("".join(json.dumps(record) + "\n" for record in records))
    return path


OURS = [
    {"iter": 10, "epoch": 0.5, "lr": 0.01, "loss": 2.0, "loss_cls": 1.5, "loss_aux": 0.5, "seconds_per_iter": 0.4},
    {"iter": 20, "epoch": 1.0, "miou": 0.25, "pixel_accuracy": 0.7, "iou": [0.5, 0.0]},
    {"iter": 20, "epoch": 1.0, "lr": 0.009, "loss": 1.5, "loss_cls": 1.2, "loss_aux": 0.3},
    {"iter": 30, "epoch": 1.5, "lr": 0.008, "loss": 1.2, "loss_cls": 1.0, "loss_aux": 0.2, "max_memory_mb": 9000.0},
]


def test_our_log_keeps_the_training_records(tmp_path):
    rows = read_our_log(write_our_log(tmp_path / "metrics.jsonl", OURS))
    assert rows == [
        LogRecord(10, 0.01, 2.0, 1.5, 0.5),
        LogRecord(20, 0.009, 1.5, 1.2, 0.3),
        LogRecord(30, 0.008, 1.2, 1.0, 0.2),
    ]


def test_an_older_log_has_only_the_total(tmp_path):
    rows = read_our_log(
        write_our_log(tmp_path / "metrics.jsonl", [{"iter": 10, "epoch": 0.5, "loss": 2.0, "lr": 0.01}])
    )
    assert rows == [LogRecord(10, 0.01, 2.0, loss_cls=None, loss_aux=None)]


def test_our_log_errors_name_the_file_and_line(tmp_path):
    bad = tmp_path / "metrics.jsonl"
    bad.write_text('{"iter": 10, "loss": 1.0, "lr": 0.01}\n[EPOCH]: 1/60\n')
    with pytest.raises(LogError, match=r"metrics.jsonl, line 2: not JSON"):
        read_our_log(bad)
    evaluations_only = write_our_log(tmp_path / "eval.jsonl", [OURS[1]])
    with pytest.raises(LogError, match="eval.jsonl: no training record"):
        read_our_log(evaluations_only)


ROWS = [LogRecord(step, 0.01, float(step)) for step in (10, 20, 40)]


def test_nearest_row_and_ties_go_to_the_earlier_one():
    assert [nearest(ROWS, step).iteration for step in (1, 14, 15, 16, 30, 31, 1000)] == [10, 10, 10, 20, 20, 40, 40]


def test_losses_at_pairs_the_nearest_rows_of_both_logs():
    reference = [LogRecord(step, 0.02, step / 2) for step in (25, 50)]
    pairs = losses_at(ROWS, reference, [12, 45])
    assert [(ours.iteration, ref.iteration) for ours, ref in pairs] == [(10, 25), (40, 50)]


def test_spread_is_log_uniform_or_even():
    assert spread(1, 1000, 4) == [1, 10, 100, 1000]
    assert spread(50, 250, 5, "linear") == [50, 100, 150, 200, 250]
    assert spread(5, 5, 10) == [5]


def test_comparison_table_sets_the_values_of_both_logs_side_by_side():
    ours = [LogRecord(step, 0.01, step / 100, loss_cls=step / 200, loss_aux=step / 400) for step in range(10, 301, 10)]
    reference = [LogRecord(step, 0.01, step / 10) for step in range(50, 1001, 50)]  # no parts: '–'
    table = comparison_table(ours, reference, points=3, spacing="linear").splitlines()
    assert table[0].split(" | ")[1:3] == ["ours total", "reference total"]
    assert table[2:] == [  # the common range 50-300 at 50, 175 (a reference line at 150 and 200: 150), 300
        "| 50 | 0.5000 | 5.0000 | 0.2500 | – | 0.1250 | – |",
        "| 150 | 1.5000 | 15.0000 | 0.7500 | – | 0.3750 | – |",
        "| 300 | 3.0000 | 30.0000 | 1.5000 | – | 0.7500 | – |",
    ]


def test_comparison_table_says_when_ours_was_logged_elsewhere():
    reference = [LogRecord(50, 0.01, 1.0)]
    assert "| 50 (ours 40) | 0.4000 | 1.0000 |" in comparison_table(
        [LogRecord(40, 0.01, 0.4), LogRecord(60, 0.01, 0.6)], reference
    )


def test_logs_without_common_iterations_cannot_be_compared():
    with pytest.raises(LogError, match="ours covers 10-40, the reference 50-100"):
        comparison_table(ROWS, [LogRecord(50, 0.01, 1.0), LogRecord(100, 0.01, 1.0)])


def test_comparison_figure_draws_each_loss_of_each_run():
    ours = [LogRecord(step, lr, 2.0, 1.5, 0.5) for step, lr in [(10, 0.009), (20, 0.008), (30, 0.007)]]
    reference = [LogRecord(step, 0.01, 3.0) for step in (5, 25, 45)]
    figure = viz.plot_log_comparison(ours, reference)
    loss, lr = figure.axes
    assert [line.get_label() for line in loss.lines] == [
        "ours total",
        "ours loss_cls",
        "ours loss_aux",
        "reference total",
    ]
    assert loss.lines[1].get_xdata().tolist() == [10, 20, 30] and loss.lines[1].get_ydata().tolist() == [1.5] * 3
    assert loss.lines[3].get_xdata().tolist() == [5, 25, 45] and loss.lines[3].get_linestyle() == "-"
    assert [line.get_ydata().tolist() for line in lr.lines] == [[0.009, 0.008, 0.007], [0.01] * 3]
    assert loss.get_xlim() == (0, 30)  # where the shorter run ends


def test_training_curves_draw_the_parts_of_the_loss_when_logged():
    loss = viz.plot_training_curves(OURS).axes[0]
    assert [line.get_label() for line in loss.lines] == ["total", "loss_cls (decoder)", "loss_aux (0.4 x aux)"]
    assert loss.lines[2].get_ydata().tolist() == [0.5, 0.3, 0.2] and loss.get_legend() is not None
    older = viz.plot_training_curves([{"iter": 10, "loss": 2.0, "lr": 0.01}]).axes[0]
    assert len(older.lines) == 1 and older.get_legend() is None


def test_compare_logs_command_reads_a_run_folder_and_writes_the_report(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    write_our_log(run / "metrics.jsonl", [{"iter": step, "lr": 0.01, "loss": step / 10} for step in range(1, 21)])
    table = compare_logs_command(run, write_2020_log(tmp_path / "reference.log"), tmp_path / "out")
    assert table in capsys.readouterr().out
    assert table.splitlines()[2:] == [
        "| 5 | 0.5000 | 9.0005 | – | 1.9000 | – | 0.3500 |",
        "| 10 | 1.0000 | 9.0010 | – | 1.8000 | – | 0.3000 |",
        "| 15 | 1.5000 | 9.0015 | – | 1.7000 | – | 0.2500 |",
        "| 20 | 2.0000 | 9.0020 | – | 1.6000 | – | 0.2000 |",
    ]  # ten log-uniform points 5, 6, 7, 8, 9, 11, 13, 15, 17, 20, each at the reference's nearest line
    assert table in (tmp_path / "out" / "log_comparison.md").read_text()
    assert (tmp_path / "out" / "log_comparison.png").read_bytes()[:4] == b"\x89PNG"


def test_the_compare_logs_command_line_prints_the_table_or_one_error_line(tmp_path, capsys):
    ours = write_our_log(tmp_path / "metrics.jsonl", [{"iter": step, "lr": 0.01, "loss": 1.0} for step in (5, 10)])
    reference = write_2020_log(tmp_path / "reference.log")
    assert main(["compare-logs", "--ours", str(ours), "--reference", str(reference)]) == 0
    assert "| 10 | 1.0000 | 9.0010 |" in capsys.readouterr().out
    (tmp_path / "garbage.log").write_text("no training here\n")
    assert main(["compare-logs", "--ours", str(ours), "--reference", str(tmp_path / "garbage.log")]) == 2
    error = capsys.readouterr().err
    assert error.startswith("error: ") and str(tmp_path / "garbage.log") in error and error.count("\n") == 1
