"""The Faust shell: the only package that imports faust. Import its modules directly."""
