#!/usr/bin/env bash
# The error contract: every reason in core::reason (core/errors.h) is in
# README's table, README lists no reason that is not in the list, and no
# code outside core/errors.h spells a reason as a bare string.
set -euo pipefail
cd "$1"
status=0
listed=$(sed -n '/^namespace reason {/,/^}  \/\/ namespace reason/p' core/errors.h |
  { grep -oE '"[A-Z][A-Z_]+"' || true; } | tr -d '"' | sort -u)
documented=$({ grep -oE '^\| `[A-Z][A-Z_]+` \| `[A-Z_]+`' README.md || true; } |
  sed -E 's/^\| `([A-Z_]+)`.*/\1/' | sort -u)
missing=$(comm -23 <(echo "$listed") <(echo "$documented"))
extra=$(comm -13 <(echo "$listed") <(echo "$documented"))
if [[ -n "$missing" ]]; then echo "reasons missing from README: $missing"; status=1; fi
if [[ -n "$extra" ]]; then echo "README lists reasons not in core::reason: $extra"; status=1; fi
bare=$(grep -rnE '((DomainError|InvalidField)\(|StatusCode::k[A-Za-z]+,)[^;]*"[A-Z][A-Z_]{4,}"' \
  --include='*.cc' --include='*.h' base core eventstore ledger api server || true)
if [[ -n "$bare" ]]; then echo "reasons spelled outside core::reason:"; echo "$bare"; status=1; fi
[[ $status == 0 ]] && echo "error contract: $(echo "$listed" | wc -l) reasons, all documented"
exit $status
