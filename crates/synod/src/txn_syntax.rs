//! The text form of a transaction on the command line:
//!
//! ```text
//! synod txn --if 'value(config) = v1' --if 'missing(lock)' \
//!           --then 'put config v2' --then 'delete old' --else 'put failed 1'
//! ```
//!
//! A compare is `FIELD(KEY) OP OPERAND`, FIELD one of `value`, `version`,
//! `created`, `modified`, OP one of `=`, `!=`, `<`, `>`; or `exists(KEY)`,
//! `missing(KEY)`. An operation is `put KEY VALUE` or `delete KEY`. Keys
//! end at the first `)` (compares) or space (operations); values are the
//! rest of the argument, trimmed.

use anyhow::{Context as _, Result, bail};
use synod_client::{Compare, CompareOp, Target, TxnOp};

/// Parse one `--if` argument.
pub fn compare(text: &str) -> Result<Compare> {
    let text = text.trim();
    let (field, rest) = text
        .split_once('(')
        .with_context(|| format!("compare {text:?}: expected FIELD(KEY) OP OPERAND"))?;
    let (key, rest) = rest
        .split_once(')')
        .with_context(|| format!("compare {text:?}: no ')' after the key"))?;
    if key.is_empty() {
        bail!("compare {text:?}: the key is empty");
    }
    let key = key.as_bytes().to_vec();
    let rest = rest.trim();
    let presence = |op| {
        if !rest.is_empty() {
            bail!("compare {text:?}: {field}(KEY) takes no operand");
        }
        Ok(Compare {
            key: key.clone(),
            op,
            target: Target::Version(0),
        })
    };
    match field.trim() {
        "exists" => return presence(CompareOp::Greater),
        "missing" => return presence(CompareOp::Equal),
        _ => {}
    }
    let (op, operand) = operator(rest).with_context(|| {
        format!("compare {text:?}: expected an operator (=, !=, <, >) after the key")
    })?;
    let number = || -> Result<u64> {
        operand
            .parse()
            .with_context(|| format!("compare {text:?}: {operand:?} is not a number"))
    };
    let target = match field.trim() {
        "value" => Target::Value(operand.as_bytes().to_vec()),
        "version" => Target::Version(number()?),
        "created" => Target::Created(number()?),
        "modified" => Target::Modified(number()?),
        other => bail!(
            "compare {text:?}: unknown field {other:?} \
             (value, version, created, modified, exists, missing)"
        ),
    };
    Ok(Compare { key, op, target })
}

/// The operator at the start of `text`, and the trimmed operand after it.
fn operator(text: &str) -> Option<(CompareOp, &str)> {
    let ops = [
        ("!=", CompareOp::NotEqual),
        ("==", CompareOp::Equal),
        ("=", CompareOp::Equal),
        ("<", CompareOp::Less),
        (">", CompareOp::Greater),
    ];
    ops.into_iter()
        .find_map(|(symbol, op)| text.strip_prefix(symbol).map(|rest| (op, rest.trim())))
}

/// Parse one `--then` or `--else` argument.
pub fn operation(text: &str) -> Result<TxnOp> {
    let text = text.trim();
    let (verb, rest) = text.split_once(char::is_whitespace).unwrap_or((text, ""));
    let rest = rest.trim_start();
    match verb {
        "put" => {
            let (key, value) = rest
                .split_once(char::is_whitespace)
                .with_context(|| format!("operation {text:?}: expected put KEY VALUE"))?;
            Ok(TxnOp::Put {
                key: key.as_bytes().to_vec(),
                value: value.trim().as_bytes().to_vec(),
            })
        }
        "delete" if !rest.is_empty() && !rest.contains(char::is_whitespace) => Ok(TxnOp::Delete {
            key: rest.as_bytes().to_vec(),
        }),
        "delete" => bail!("operation {text:?}: expected delete KEY"),
        other => bail!("operation {text:?}: unknown operation {other:?} (put, delete)"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key_op_target(c: Compare) -> (Vec<u8>, CompareOp, Target) {
        (c.key, c.op, c.target)
    }

    #[test]
    fn compares_parse_every_field_and_operator() {
        let parsed = |text| key_op_target(compare(text).unwrap());
        assert_eq!(
            parsed("value(config) = v 1 "),
            (
                b"config".to_vec(),
                CompareOp::Equal,
                Target::Value(b"v 1".to_vec())
            )
        );
        assert_eq!(
            parsed("version(k) != 3"),
            (b"k".to_vec(), CompareOp::NotEqual, Target::Version(3))
        );
        assert_eq!(
            parsed("created(k)<7"),
            (b"k".to_vec(), CompareOp::Less, Target::Created(7))
        );
        assert_eq!(
            parsed("modified(k) > 9"),
            (b"k".to_vec(), CompareOp::Greater, Target::Modified(9))
        );
        assert_eq!(
            parsed("exists(k)"),
            (b"k".to_vec(), CompareOp::Greater, Target::Version(0))
        );
        assert_eq!(
            parsed("missing(k)"),
            (b"k".to_vec(), CompareOp::Equal, Target::Version(0))
        );
    }

    #[test]
    fn bad_compares_say_what_is_wrong() {
        let error = |text| compare(text).unwrap_err().to_string();
        assert!(error("config = 1").contains("FIELD(KEY)"));
        assert!(error("value() = 1").contains("key is empty"));
        assert!(error("version(k) = x").contains("not a number"));
        assert!(error("version(k) ~ 1").contains("operator"));
        assert!(error("size(k) = 1").contains("unknown field"));
        assert!(error("exists(k) = 1").contains("no operand"));
    }

    #[test]
    fn operations_parse_puts_and_deletes() {
        assert_eq!(
            operation("put k some value").unwrap(),
            TxnOp::Put {
                key: b"k".to_vec(),
                value: b"some value".to_vec()
            }
        );
        assert_eq!(
            operation("delete k").unwrap(),
            TxnOp::Delete { key: b"k".to_vec() }
        );
        assert!(operation("put k").is_err());
        assert!(operation("delete").is_err());
        assert!(operation("delete a b").is_err());
        assert!(
            operation("get k")
                .unwrap_err()
                .to_string()
                .contains("unknown")
        );
    }
}
