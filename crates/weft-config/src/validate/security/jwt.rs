//! RequestAuthentication.

use super::scope::{is_header_token, is_strict_header_name, policy_scope};
use super::spec;
use crate::kinds::istio::*;
use crate::path::FieldPath;
use crate::validate::Report;

pub fn request_authentication(ra: &RequestAuthentication, r: &mut Report) {
    policy_scope(
        r,
        ra.selector.as_ref(),
        ra.target_ref.as_ref(),
        &ra.target_refs,
    );
    for (i, rule) in ra.jwt_rules.iter().enumerate() {
        jwt_rule(rule, spec().key("jwtRules").index(i), r);
    }
}

fn jwt_rule(rule: &JwtRule, at: FieldPath, r: &mut Report) {
    let jwks_uri = rule.jwks_uri.as_deref().unwrap_or("");
    if rule.issuer.is_empty() && jwks_uri.is_empty() {
        r.error(
            at.key("issuer"),
            "issuer or jwksUri must be set on every JWT rule",
        )
        .hint(
            "set `issuer` to the token's `iss` claim, e.g. `issuer: https://accounts.example.com`",
        );
    }
    for (j, a) in rule.audiences.iter().enumerate() {
        if a.is_empty() {
            r.error(
                at.key("audiences").index(j),
                "audiences[] entries must be non-empty (at least 1 chars long)",
            )
            .hint("remove the empty entry; an empty `audiences` list means no audience check");
        }
    }
    if !jwks_uri.is_empty() {
        match jwks_uri.split_once("://") {
            Some((scheme, rest))
                if scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https") =>
            {
                if rest.is_empty() || rest.starts_with('/') {
                    r.error(
                        at.key("jwksUri"),
                        format!("jwksUri `{jwks_uri}` has no host"),
                    )
                    .hint("write the full URL, e.g. https://example.com/.well-known/jwks.json");
                }
            }
            Some((scheme, _)) => {
                r.error(
                    at.key("jwksUri"),
                    format!("jwksUri scheme `{scheme}` is not supported: url must have scheme http or https"),
                )
                .hint("fetch the JWKS over https://, or inline it with `jwks`");
            }
            None => {
                r.error(
                    at.key("jwksUri"),
                    format!(
                        "jwksUri `{jwks_uri}` is not a URL: url must have scheme http or https"
                    ),
                )
                .hint("write the full URL, e.g. https://example.com/.well-known/jwks.json");
            }
        }
    }
    if let Some(jwks) = rule.jwks.as_deref().filter(|s| !s.is_empty()) {
        match serde_json::from_str::<serde_json::Value>(jwks) {
            Ok(v) if v.get("keys").is_some_and(|k| k.is_array()) || v.get("kty").is_some() => {}
            Ok(_) => {
                r.error(
                    at.key("jwks"),
                    "jwks parse error: expected a JSON Web Key Set (`{\"keys\": [...]}`)",
                )
                .hint("paste the issuer's JWKS document, which has a top-level `keys` list");
            }
            Err(e) => {
                r.error(
                    at.key("jwks"),
                    format!("jwks parse error: not valid JSON ({e})"),
                )
                .hint("paste the issuer's JWKS document as JSON");
            }
        }
        if !jwks_uri.is_empty() {
            r.warning(
                at.key("jwks"),
                "both jwks and jwksUri are set; the inline jwks is used and jwksUri is ignored",
            )
            .hint("keep only one of `jwks` and `jwksUri`");
        }
    }
    for (j, h) in rule.from_headers.iter().enumerate() {
        let p = at.key("fromHeaders").index(j).key("name");
        if h.name.is_empty() {
            r.error(
                p,
                "fromHeaders[].name: Required value (at least 1 chars long)",
            )
            .hint("name the header carrying the token, e.g. `name: x-jwt-assertion`");
        } else if !is_header_token(&h.name) {
            r.error(p, format!("`{}` is not a valid HTTP header name", h.name))
                .hint("header names are letters, digits and `-` (no spaces or ':')");
        }
    }
    for (field, list, what) in [
        ("fromParams", &rule.from_params, "query parameter"),
        ("fromCookies", &rule.from_cookies, "cookie"),
    ] {
        for (j, v) in list.iter().enumerate() {
            if v.is_empty() {
                r.error(
                    at.key(field).index(j),
                    format!("{field}[{j}] must name a {what} (at least 1 chars long)"),
                )
                .hint(format!(
                    "remove the empty entry or name the {what} carrying the token"
                ));
            }
        }
    }
    if let Some(h) = rule
        .output_payload_to_header
        .as_deref()
        .filter(|h| !h.is_empty())
        && !is_strict_header_name(h)
    {
        r.error(
            at.key("outputPayloadToHeader"),
            format!("`{h}` is not a valid header name"),
        )
        .hint("use letters, digits, '-' and '_' only");
    }
    for (j, c) in rule.output_claim_to_headers.iter().enumerate() {
        let p = at.key("outputClaimToHeaders").index(j);
        if c.claim.is_empty() {
            r.error(
                p.key("claim"),
                "outputClaimToHeaders[].claim must be non-empty (at least 1 chars long)",
            )
            .hint("name the claim to copy, e.g. `claim: sub` or a nested `claim: a.b`");
        }
        if c.header.is_empty() {
            r.error(
                p.key("header"),
                "outputClaimToHeaders[].header must be non-empty (at least 1 chars long)",
            )
            .hint("name the header to write, e.g. `header: x-jwt-sub`");
        } else if !is_strict_header_name(&c.header) {
            r.error(
                p.key("header"),
                format!(
                    "header `{}` is invalid: header in body should match ^[-_A-Za-z0-9]+$",
                    c.header
                ),
            )
            .hint("use letters, digits, '-' and '_' only; pseudo-headers such as `:authority` cannot be set");
        }
    }
    for (j, c) in rule.space_delimited_claims.iter().enumerate() {
        if c.is_empty() {
            r.error(
                at.key("spaceDelimitedClaims").index(j),
                "spaceDelimitedClaims[] entries must be non-empty (at least 1 chars long)",
            )
            .hint("remove the empty entry");
        }
    }
    if let Some(t) = rule.timeout
        && t.as_std() < std::time::Duration::from_millis(1)
    {
        r.error(
            at.key("timeout"),
            format!("timeout `{t}` must be a valid duration greater than 1ms"),
        )
        .hint("omit it for the 5s default, or write e.g. `timeout: 10s`");
    }
}
