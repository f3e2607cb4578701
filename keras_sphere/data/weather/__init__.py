"""Weather data in WeatherBench-2 layout: a simulated atmosphere, loading, windows.

Modules: `held_suarez` (a dry atmosphere simulated with dinosaur-dycore, written as
WB2-style zarr or NetCDF), `wb2` (`open_wb2`: any WB2-layout dataset checked, oriented
and put on a model grid), `normalization` (statistics from the training split),
`splits` (blocks of time with gaps), `windows` (state and next states for training,
streamed from disk). Forecasts and their scores are `keras_sphere.weather`.
"""

from keras_sphere.data.weather.held_suarez import simulate_held_suarez
from keras_sphere.data.weather.held_suarez import simulation_wall_hours
from keras_sphere.data.weather.normalization import ChannelLayout
from keras_sphere.data.weather.normalization import Normalization
from keras_sphere.data.weather.normalization import compute_normalization
from keras_sphere.data.weather.splits import split_by_time
from keras_sphere.data.weather.wb2 import WIND_PAIRS
from keras_sphere.data.weather.wb2 import open_wb2
from keras_sphere.data.weather.windows import WeatherWindows
