"""sources/spotify"""
