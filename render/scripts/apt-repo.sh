# --- apt repositories (render/scripts/apt-repo.sh) ---
# add_apt_repository: trust the repository REPO_NAME at REPO_URL (suite REPO_SUITE, components
# REPO_COMPONENTS) only with a signing key whose primary fingerprint is REPO_FINGERPRINT. The key is
# REPO_KEY (text) or fetched from REPO_KEY_URL over https. A key with any other fingerprint is refused
# before anything is written. The key goes into a keyring of its own, which the sources line names in
# signed-by, so it can sign nothing else. Running it again changes nothing.
apt_repo_fingerprints() {  # the fingerprint of each primary key in a key file (a subkey's follows "sub")
  gpg --batch --no-default-keyring --show-keys --with-colons "$1" 2>/dev/null |
    awk -F: '$1 == "pub" { primary = 1; next } $1 == "fpr" { if (primary) print $10; primary = 0 }'
}

add_apt_repository() {
  local keyring="/usr/share/keyrings/hyperscaler-$REPO_NAME.gpg"
  local list="/etc/apt/sources.list.d/hyperscaler-$REPO_NAME.list"
  local key found line
  if [ "$(apt_repo_fingerprints "$keyring" | paste -sd' ' -)" != "$REPO_FINGERPRINT" ]; then
    key=$(mktemp)
    if [ -n "$REPO_KEY" ]; then
      printf '%s\n' "$REPO_KEY" > "$key"
    elif ! curl -fsSL --proto '=https' --tlsv1.2 --retry 3 --max-time 60 "$REPO_KEY_URL" -o "$key"; then
      rm -f "$key"
      die "cannot fetch the $REPO_NAME signing key from $REPO_KEY_URL"
    fi
    found=$(apt_repo_fingerprints "$key" | paste -sd' ' -)
    if [ "$found" != "$REPO_FINGERPRINT" ]; then
      rm -f "$key"
      die "the $REPO_NAME signing key has fingerprint ${found:-none}, not the pinned $REPO_FINGERPRINT: refusing it"
    fi
    if grep -q -- '-----BEGIN PGP PUBLIC KEY BLOCK-----' "$key"; then
      gpg --batch --yes --dearmor -o "$keyring.tmp" "$key"
    else
      cp "$key" "$keyring.tmp"  # already binary, as some repositories serve it
    fi
    rm -f "$key"
    chmod 0644 "$keyring.tmp"
    mv -f "$keyring.tmp" "$keyring"
    log "$REPO_NAME signing key $REPO_FINGERPRINT installed"
  fi
  line="deb [signed-by=$keyring] $REPO_URL $REPO_SUITE${REPO_COMPONENTS:+ $REPO_COMPONENTS}"
  if [ "$(cat "$list" 2>/dev/null)" != "$line" ]; then
    printf '%s\n' "$line" > "$list.tmp"
    mv -f "$list.tmp" "$list"
    log "$REPO_NAME repository: $REPO_URL $REPO_SUITE"
  fi
}
# --- end of apt repositories ---
