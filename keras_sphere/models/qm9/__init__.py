"""QM9 molecular property regression: featuriser, backbone, tails, regressor."""

from keras_sphere.models.qm9.atom_reference import AtomReference
from keras_sphere.models.qm9.atom_reference import atom_counts
from keras_sphere.models.qm9.atom_reference import fit_atom_reference
from keras_sphere.models.qm9.atom_scatter import ScatterAtoms
from keras_sphere.models.qm9.molecule_featurizer import MoleculeFeaturizer
from keras_sphere.models.qm9.molecule_tail import MoleculeTail
from keras_sphere.models.qm9.qm9_backbone import QM9Backbone
from keras_sphere.models.qm9.qm9_regressor import QM9Regressor
from keras_sphere.models.qm9.qm9_regressor import RandomMoleculeRotation
from keras_sphere.models.qm9.qm9_regressor import budget_layout
from keras_sphere.models.qm9.qm9_regressor import check_molecules
from keras_sphere.models.qm9.qm9_targets import TARGET_NAMES
from keras_sphere.models.qm9.qm9_targets import TARGETS
