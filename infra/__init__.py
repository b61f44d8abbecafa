"""Clusters: specs, a local Spark standalone cluster beside the engine, EC2 by flintrock."""
