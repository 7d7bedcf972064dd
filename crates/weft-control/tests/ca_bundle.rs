//! Root rotation: a trust bundle of two roots verifies leaves signed under either.

use rcgen::{CertificateParams, KeyPair};
use weft_control::ca::{CaOptions, CertificateAuthority, WorkloadIdentity, certs_from_pem};

fn leaf_chain(ca: &CertificateAuthority) -> Vec<weft_control::ca::PemCert> {
    let key = KeyPair::generate().expect("key");
    let csr = CertificateParams::default()
        .serialize_request(&key)
        .expect("csr")
        .pem()
        .expect("pem");
    let id = WorkloadIdentity::new("default", "web").expect("id");
    ca.sign_csr(&csr, &id, None)
        .expect("signed")
        .cert_chain
        .iter()
        .flat_map(|p| certs_from_pem(p).expect("pem"))
        .collect()
}

#[test]
fn two_root_bundle_verifies_leaves_from_either_root() {
    let dirs = [
        tempfile::tempdir().expect("tmp"),
        tempfile::tempdir().expect("tmp"),
    ];
    let old =
        CertificateAuthority::load_or_generate(dirs[0].path(), CaOptions::default()).expect("ca");
    let new =
        CertificateAuthority::load_or_generate(dirs[1].path(), CaOptions::default()).expect("ca");
    assert_ne!(old.root_pem(), new.root_pem());
    let old_leaf = leaf_chain(&old);
    let new_leaf = leaf_chain(&new);

    // Before the rotation the old bundle refuses leaves of the new root.
    assert!(old.trust_bundle().verify_chain(&new_leaf[..1]).is_err());

    old.add_root(new.root_pem()).expect("add the new root");
    let bundle = old.trust_bundle();
    assert_eq!(bundle.roots_pem().len(), 2);
    assert_eq!(bundle.verify_chain(&old_leaf[..1]).expect("old leaf"), 0);
    assert_eq!(bundle.verify_chain(&new_leaf[..1]).expect("new leaf"), 1);
    // A third root does not fit, and the same root is not added twice.
    let third_dir = tempfile::tempdir().expect("tmp");
    let third =
        CertificateAuthority::load_or_generate(third_dir.path(), CaOptions::default()).expect("ca");
    assert!(old.add_root(third.root_pem()).is_err());
    assert!(new.add_root(new.root_pem()).is_err());

    // The root the CA signs under cannot be retired; after switching CAs, the old root can.
    let err = old.retire_root(old.root_pem()).expect_err("signing root");
    assert!(err.to_string().contains("signs under"), "{err}");
    new.add_root(old.root_pem())
        .expect("new CA trusts the old root during the overlap");
    new.retire_root(old.root_pem())
        .expect("retire the old root");
    let after = new.trust_bundle();
    assert_eq!(after.roots_pem(), vec![new.root_pem().to_owned()]);
    assert!(after.verify_chain(&old_leaf[..1]).is_err());
    assert!(after.verify_chain(&new_leaf).is_ok());
}

#[test]
fn a_leaf_is_not_a_root() {
    let dir = tempfile::tempdir().expect("tmp");
    let ca = CertificateAuthority::load_or_generate(dir.path(), CaOptions::default()).expect("ca");
    let leaf = leaf_chain(&ca);
    let err = ca.add_root(&leaf[0].pem).expect_err("leaf");
    assert!(err.to_string().contains("not a CA"), "{err}");
}
