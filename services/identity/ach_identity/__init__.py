"""Partner identity: the registry of every organization in the network, its type and its roles."""
