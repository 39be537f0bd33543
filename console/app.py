"""Costline console entry point (placeholder until the console issue lands)."""

import streamlit as st

st.set_page_config(page_title="Costline", layout="wide")
st.title("Costline")
st.write("LLM spend console — pages arrive with the console issue.")
