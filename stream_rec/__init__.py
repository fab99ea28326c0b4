"""stream-rec: a real-time recommender on Kafka and Redis.

Importing the package connects to nothing; clients are created in ``start()`` methods.
"""

__version__ = "0.1.0"
