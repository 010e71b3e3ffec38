"""Everything that reads or writes the database; decides nothing."""
