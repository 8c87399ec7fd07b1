"""The residents' council: proposals from collection to evaluation, its board, papers and chat."""
