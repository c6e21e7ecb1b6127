"""The CNI core: what every layer above may use and which uses none of them."""
