"""Training utilities shared by recipes and examples.

Learning-rate schedules (`schedules.py`), fits that resume after an interruption
(`checkpoints.py`), seeded runs (`determinism.py`) and the one training loop
recipes share (`loop.py`). Import as
``from keras_sphere import training``; `import keras_sphere` does not load it.
"""

from keras_sphere.training.checkpoints import BudgetedBatches
from keras_sphere.training.checkpoints import ResumableBatches
from keras_sphere.training.checkpoints import resumable_callbacks
from keras_sphere.training.determinism import XLA_GPU_DETERMINISTIC_FLAGS
from keras_sphere.training.determinism import set_seed
from keras_sphere.training.loop import default_run_dir
from keras_sphere.training.loop import fit_run
from keras_sphere.training.schedules import QM9_REFERENCE_BATCH_SIZE
from keras_sphere.training.schedules import QM9_REFERENCE_LEARNING_RATE
from keras_sphere.training.schedules import QM9_REFERENCE_WARMUP_EPOCHS
from keras_sphere.training.schedules import WarmupCosineDecay
from keras_sphere.training.schedules import qm9_reference_schedule
