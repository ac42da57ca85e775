"""Small standard-library helpers shared by the host side and the in-container runtime."""
