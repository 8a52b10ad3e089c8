def tell(idea: str) -> str:
    return f"Once upon a time, {idea}."
