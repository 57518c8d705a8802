"""offerletters tests: unit tests of pure logic, integration tests on real servers."""
