"""The project's own landmark encoder (landmarks -> ψ, θ): the network and its files
(network.py), settings (config.py), synthetic training data (synthetic.py), training
(training.py) and its reader in the tracker (reader.py)."""
