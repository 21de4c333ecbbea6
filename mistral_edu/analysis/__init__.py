"""Tools for looking inside the model: head-detection scores and friends."""
from .heads import (attention_patterns, duplicate_token_score, duplicate_token_scores, first_token_score,
                    first_token_scores, induction_score, induction_scores, previous_token_score,
                    previous_token_scores, repeated_random_tokens, top_heads, word_token_ids)
