"""offerletters: personalised offer letters in bulk, through Kafka and SMTP."""
