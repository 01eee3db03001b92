"""racenet: a decentralized AI network whose voting weight comes from a compute Race."""

__version__ = "0.1.0"
