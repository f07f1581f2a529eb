"""Ingestion of real data: TNG-format HSC mocks with TNG catalogues, and HSC-SSP cutouts."""
