"""How good a translation is: the offline domain judge (`judge`), the domain score (`domain_score`)
and `vitcycle eval` with FID, KID and paired metrics (`metrics`)."""
