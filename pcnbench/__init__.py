"""pcnbench: a declarative benchmark harness for neural-network parameter reduction."""

__version__ = "0.1.0"
