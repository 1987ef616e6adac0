"""Running Carepath's deployments: the local stack (`make serve`) and the drain loop."""
