"""The cmb_1024 recipe trains its networks in the zoo's one loop, and resumes."""

import numpy as np
import pytest


@pytest.mark.large
def test_scattering_cnn_trains_resumes_and_keeps_the_best(recipe_modules, tmp_path):
    train = recipe_modules("cmb_1024", "train")
    rng = np.random.default_rng(0)
    labels = {"train": np.arange(36) % 2, "validation": np.arange(12) % 2}
    # Toy features on 32 x 32 (the preset's n_s) whose mean tells the classes apart.
    splits = {
        split: {
            "scattering": rng.normal(size=(len(y), 32, 32, 3)).astype("float32")
            + y[:, None, None, None].astype("float32"),
            "labels": y,
        }
        for split, y in labels.items()
    }
    splits["test"] = splits["validation"]
    model, history, result, _ = train.train_scattering(splits, 0, 2, tmp_path)
    run_dir = tmp_path / "scattering_cnn_seed0"
    assert (run_dir / "best.weights.h5").exists()
    assert (run_dir / "learning_curve.png").exists()
    assert len(history["val_accuracy"]) == 2 and len(history["loss"]) == 2
    # The model holds the best epoch's weights: its validation accuracy is the best.
    assert result["validation"] == pytest.approx(max(history["val_accuracy"]))
    # Run again: the run is finished, so nothing trains and the history stays.
    _, again, result_again, _ = train.train_scattering(splits, 0, 2, tmp_path)
    assert again == history and result_again == result
