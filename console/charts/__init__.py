"""Charts: pure functions from a DataFrame (built by ``console.frames``) to an Altair chart, no
Streamlit. ``style`` holds the shared look; ``spend`` the Overview and Requests charts;
``forecast`` the Forecast chart and the anomaly marks also drawn on the Overview.
"""
