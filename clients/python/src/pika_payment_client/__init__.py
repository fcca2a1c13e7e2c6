"""Client of pika-payment."""
