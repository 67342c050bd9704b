"""Harvest: dataset-scale statistics of every component (firing frequency, CI histogram, top
examples, co-activation, token statistics, logit effects), accumulated shard by shard with exact
merges and stored under `harvest/` in the factor store. No Ray here: services/harvest runs the
same steps on data-parallel workers."""

from spd_core.harvest.inputs import HarvestInputError, HarvestInputs, harvest_inputs
from spd_core.harvest.reader import ComponentStats, ComponentSummary, HarvestReader, NoHarvestError
from spd_core.harvest.run import harvest
from spd_core.harvest.settings import HarvestSettings
from spd_core.harvest.summarize import HarvestResult
from spd_core.harvest.writer import write_harvest

__all__ = [
    "ComponentStats",
    "ComponentSummary",
    "HarvestInputError",
    "HarvestInputs",
    "HarvestReader",
    "HarvestResult",
    "HarvestSettings",
    "NoHarvestError",
    "harvest",
    "harvest_inputs",
    "write_harvest",
]
