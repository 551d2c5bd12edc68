use super::*;

#[test]
fn network_and_file_urls_are_accepted() {
    for url in [
        "https://example.com/team/app.git",
        "HTTPS://example.com/app",
        "http://192.168.1.10:8080/app.git",
        "git://127.0.0.1:9418/app",
        "file:///srv/git/app",
    ] {
        assert!(matches!(classify(url), Ok(UrlKind::Network | UrlKind::FileUrl)), "{url}");
    }
    assert_eq!(classify("file:///srv/git/app"), Ok(UrlKind::FileUrl));
    assert_eq!(classify("git://host/app"), Ok(UrlKind::Network));
}

#[test]
fn paths_are_local() {
    for url in ["/srv/git/app", "./app", "../app", "app", "repos/app", "./dir:with-colon"] {
        assert_eq!(classify(url), Ok(UrlKind::LocalPath), "{url}");
    }
}

#[test]
fn ssh_and_other_forms_are_refused_with_what_works() {
    for url in [
        "ssh://git@example.com/app.git",
        "git+ssh://example.com/app",
        "git@example.com:team/app.git",
        "example.com:app",
        "ftp://example.com/app",
        "ext::sh -c touch% /tmp/x",
        "",
        "   ",
        "\t",
        "-uhttps://example.com/app",
        "--upload-pack=touch /tmp/x",
        " https://example.com/app",
        "https://",
        "https:///path",
        "file://",
        "https://exa mple.com/app",
        "https://example.com/a\nb",
    ] {
        let reason = classify(url).expect_err(url);
        assert!(!reason.is_empty(), "{url}");
    }
    let reason = classify("git@example.com:team/app.git").expect_err("scp form");
    assert!(reason.contains("ssh") && reason.contains("https://"), "{reason}");
    let reason = classify("").expect_err("empty");
    assert!(reason.contains("file://"), "{reason}");
    let reason = classify("ftp://example.com/app").expect_err("ftp");
    assert!(reason.contains("`ftp`"), "{reason}");
}

#[test]
fn local_sources_are_refused_unless_allowed_without_looking_at_the_disk() {
    for url in ["/etc", "/does/not/exist", "./repo", "file:///srv/git/app", "FILE:///x"] {
        let err = check_allowed(url, false).expect_err(url);
        assert!(matches!(err, SourceError::LocalRefused { .. }), "{url}: {err}");
        assert!(err.to_string().contains("--allow-local-sources"), "{err}");
        assert!(check_allowed(url, true).is_ok(), "{url}");
    }
    // The same answer whether the path exists or not.
    assert_eq!(
        check_allowed("/etc", false).expect_err("refused").to_string().replace("/etc", "P"),
        check_allowed("/nope", false).expect_err("refused").to_string().replace("/nope", "P")
    );
    for url in ["https://example.com/app.git", "git://127.0.0.1/app", "http://10.0.0.1/a"] {
        assert!(check_allowed(url, false).is_ok(), "{url}");
    }
}

#[test]
fn validate_url_resolves_local_paths_and_refuses_missing_ones() {
    let dir = tempfile::tempdir().expect("tempdir");
    let resolved = validate_url(dir.path().to_str().expect("utf-8 temp path")).expect("existing directory");
    assert!(Path::new(&resolved).is_absolute());
    let missing = dir.path().join("nope");
    let err = validate_url(missing.to_str().expect("utf-8")).expect_err("missing directory");
    assert!(matches!(err, SourceError::RepositoryNotFound { .. }), "{err}");
    let err = validate_url("ssh://host/app").expect_err("ssh");
    assert!(matches!(err, SourceError::InvalidUrl { .. }), "{err}");
    assert_eq!(validate_url("https://example.com/app").expect("https"), "https://example.com/app");
}

#[test]
fn branch_names_follow_git_rules() {
    for ok in ["main", "feature/login", "release-1.2", "v2_fix"] {
        assert!(validate_branch(ok).is_ok(), "{ok}");
    }
    for bad in [
        "",
        " ",
        "-x",
        "HEAD",
        "a..b",
        "a b",
        "a~1",
        "x:y",
        "end.lock",
        "/lead",
        "trail/",
        "a//b",
        "refs/heads/main",
        "nul\0",
        "ask?",
    ] {
        assert!(matches!(validate_branch(bad), Err(SourceError::InvalidBranch { .. })), "{bad:?}");
    }
}

/// The check runs without libgit2 (so the agent need not load it): it agrees
/// with libgit2's own rules on names that test their corners.
#[test]
fn branch_names_are_judged_as_libgit2_judges_them() {
    for name in [
        "main",
        "a.",
        "a/.b",
        ".hidden",
        "a/b.lock",
        "a.lock/b",
        "@",
        "a@{b",
        "a@b",
        "a\\b",
        "a*b",
        "x[y",
        "a..",
        "a/./b",
        "ü-branch",
        "a^b",
        "a:b",
        "a?b",
        "a b",
        "tab\there",
        "a/b/c",
        "trail.",
        "x//y",
        "release/1.0",
        "a{b",
        "a}b",
        "@{",
        "-",
        "--x",
        "a-",
        "v1.2.3",
    ] {
        let ours = validate_branch(name).is_ok();
        let libgit2 = !name.starts_with('-')
            && name != "HEAD"
            && git2::Reference::is_valid_name(&format!("refs/heads/{name}"));
        assert_eq!(ours, libgit2, "{name:?}: ours {ours}, libgit2 {libgit2}");
    }
}

#[test]
fn missing_branch_lists_the_available_ones() {
    let heads = vec![("dev".to_string(), Oid::zero()), ("main".to_string(), Oid::zero())];
    match branch_tip(&heads, "u", "prod") {
        Err(SourceError::BranchNotFound { available, .. }) => assert_eq!(available, "dev, main"),
        other => panic!("expected BranchNotFound, got {other:?}"),
    }
    match branch_tip(&[], "u", "main") {
        Err(SourceError::BranchNotFound { available, .. }) => assert!(available.contains("none")),
        other => panic!("expected BranchNotFound, got {other:?}"),
    }
}

#[test]
fn tree_size_sums_blobs_recursively_and_stops_over_the_limit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let repo = Repository::init(dir.path()).expect("init");
    let small = repo.blob(&[b'a'; 100]).expect("blob");
    let large = repo.blob(&[b'b'; 1000]).expect("blob");
    let mut sub = repo.treebuilder(None).expect("treebuilder");
    sub.insert("large.bin", large, 0o100644).expect("insert");
    let sub = sub.write().expect("write subtree");
    let mut root = repo.treebuilder(None).expect("treebuilder");
    root.insert("small.txt", small, 0o100644).expect("insert");
    root.insert("dir", sub, 0o040000).expect("insert");
    let tree = repo.find_tree(root.write().expect("write tree")).expect("tree");

    assert_eq!(tree_size(&repo, &tree, u64::MAX).expect("size"), 1100);
    assert!(tree_size(&repo, &tree, 500).expect("size over limit") > 500);
    assert_eq!(tree_size(&repo, &tree, 1100).expect("size at limit"), 1100);
}
