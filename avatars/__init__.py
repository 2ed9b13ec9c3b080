"""Avatar store (content-hash ids, checked imports): lands with the avatar issue."""
