"""pcnbench: a declarative benchmark harness for neural-network parameter reduction."""

__version__ = "0.2.0"
