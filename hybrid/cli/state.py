"""What the root command hands to its sub-commands: where the config and data live."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from hybrid.config import HybridConfig, load_config, with_data_dir
from hybrid.knowledge import KnowledgeBaseCatalog, open_catalog


@dataclass
class State:
    config_path: Path | None
    data_dir: Path | None
    debug: bool

    @cached_property
    def config(self) -> HybridConfig:
        config = load_config(self.config_path)
        if self.data_dir is not None:
            config = with_data_dir(config, self.data_dir)
        return config

    @cached_property
    def catalog(self) -> KnowledgeBaseCatalog:
        return open_catalog(self.config.store)
