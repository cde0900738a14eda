"""drip: patient-education drip campaigns for clinics.

Data flow: signup -> subscriber -> campaign rules -> due steps -> render -> deliver
-> record. See README.md for the tour.
"""
