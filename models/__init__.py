"""What is stored (SQLModel tables) and what crosses Temporal (pydantic contracts)."""
