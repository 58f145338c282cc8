"""Data layer: manifest v1, importers, robust image loading, crops, synthetic comics, datasets."""
