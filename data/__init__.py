"""Carepath demo data: static reference files (JSON) and the seeder that loads them."""
