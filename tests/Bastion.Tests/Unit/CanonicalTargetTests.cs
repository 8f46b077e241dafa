using System.Text;
using Bastion.Policy.Canonical;

namespace Bastion.Tests.Unit;

/// <summary>The one canonical request target (SPEC 2.1, issue 9 item 1): examples, properties, prefixes, mutations.</summary>
public class CanonicalTargetTests
{
    static (TargetStatus Status, CanonicalTarget T, string? Reason) Parse(string target, AmbiguousTargets mode = AmbiguousTargets.Refuse)
    {
        var t = new CanonicalTarget();
        var s = RequestTarget.Parse(Encoding.UTF8.GetBytes(target), mode, t, out var reason);
        return (s, t, reason);
    }

    [Theory]
    // Unreserved escapes decoded (in path and query), others upper-cased, dot-segments removed, fragment dropped.
    [InlineData("http://a.test/a.ex%65", "http://a.test/a.exe", "/a.exe")]
    [InlineData("http://a.test/%61dmin/x", "http://a.test/admin/x", "/admin/x")]
    [InlineData("http://a.test/a/./b/../c", "http://a.test/a/c", "/a/c")]
    [InlineData("http://a.test/a/%2e%2E/c", "http://a.test/c", "/c")]
    [InlineData("http://a.test/../../x", "http://a.test/x", "/x")]
    [InlineData("http://a.test/a/..", "http://a.test/", "/")]
    [InlineData("http://a.test/a/.", "http://a.test/a/", "/a/")]
    [InlineData("http://a.test/x.exe#.txt", "http://a.test/x.exe", "/x.exe")]
    [InlineData("http://a.test/a%20b?q=%7e%2a", "http://a.test/a%20b?q=~%2A", "/a b")]
    [InlineData("http://a.test/caf%c3%a9", "http://a.test/caf%C3%A9", "/café")]
    [InlineData("http://a.test/p?x=%zz&y=100%", "http://a.test/p?x=%zz&y=100%", "/p")]
    [InlineData("http://a.test/a\"b", "http://a.test/a%22b", "/a\"b")]
    [InlineData("http://a.test", "http://a.test/", "/")]
    [InlineData("http://a.test?q", "http://a.test/?q", "/")]
    // Host: lowercase, trailing dot gone, default port dropped, IDN as punycode, IPv4 shorthands as addresses.
    [InlineData("HTTP://CDN1.Glob.TEST./x", "http://cdn1.glob.test/x", "/x")]
    [InlineData("http://a.test:80/", "http://a.test/", "/")]
    [InlineData("http://a.test:8080/", "http://a.test:8080/", "/")]
    [InlineData("https://a.test:443/", "https://a.test/", "/")]
    [InlineData("http://bücher.test/", "http://xn--bcher-kva.test/", "/")]
    [InlineData("http://XN--BCHER-KVA.test/", "http://xn--bcher-kva.test/", "/")]
    [InlineData("http://0/", "http://0.0.0.0/", "/")]
    [InlineData("http://127.1:8080/", "http://127.0.0.1:8080/", "/")]
    [InlineData("http://0x7f.1/", "http://127.0.0.1/", "/")]
    [InlineData("http://2130706433/", "http://127.0.0.1/", "/")]
    [InlineData("http://[::]/", "http://[::]/", "/")]
    [InlineData("http://[0:0::1]:81/", "http://[::1]:81/", "/")]
    [InlineData("http://user:pw@a.test/", "http://a.test/", "/")]
    [InlineData("/origin/%7Eform?x", "/origin/~form?x", "/origin/~form")]
    public void Canonical_forms(string input, string url, string policyPath)
    {
        var (s, t, reason) = Parse(input);
        Assert.True(s == TargetStatus.Ok, $"{input}: {s} {reason}");
        Assert.Equal(url, t.Url);
        Assert.Equal(policyPath, t.PolicyPath);
    }

    [Theory]
    [InlineData("http://a.test//admin/x", "//")]
    [InlineData("http://a.test/public/..%2fadmin/x", "%2F")]
    [InlineData("http://a.test/admin%2Fx", "%2F")]
    [InlineData("http://a.test/admin%5cx", "%5C")]
    [InlineData("http://a.test/admin\\x", "backslash")]
    [InlineData("http://a.test/a%00.txt", "NUL")]
    [InlineData("http://a.test/a%0d%0aX", "control")]
    [InlineData("http://a.test/%c3%28", "UTF-8")]
    [InlineData("http://a.test/a/..//b", "//")]
    public void Ambiguous_forms_are_refused(string input, string why)
    {
        var (s, _, reason) = Parse(input);
        Assert.Equal(TargetStatus.Ambiguous, s);
        Assert.Contains(why, reason);
    }

    [Theory]
    // Passed on request, judged in their widest reading: decoded, backslash as slash, slashes merged, dots removed.
    [InlineData("http://a.test//admin/x", "http://a.test//admin/x", "/admin/x")]
    [InlineData("http://a.test/public/..%2fadmin/x", "http://a.test/public/..%2Fadmin/x", "/admin/x")]
    [InlineData("http://a.test/admin%2Fx", "http://a.test/admin%2Fx", "/admin/x")]
    [InlineData("http://a.test/public\\..\\admin", "http://a.test/public\\..\\admin", "/admin")]
    public void Ambiguous_forms_passed_are_judged_decoded(string input, string url, string policyPath)
    {
        var (s, t, _) = Parse(input, AmbiguousTargets.Pass);
        Assert.Equal(TargetStatus.Ok, s);
        Assert.NotNull(t.Ambiguity);
        Assert.Equal(url, t.Url);
        Assert.Equal(policyPath, t.PolicyPath);
    }

    [Theory]
    [InlineData("")]
    [InlineData("a.test/x")]
    [InlineData("http:/a.test/")]
    [InlineData("http://a.test/%4")]
    [InlineData("http://a.test/%g0")]
    [InlineData("http://a.test/a b")]
    [InlineData("http://a.test/a\tb")]
    [InlineData("http://:80/")]
    [InlineData("http://a.test:0/")]
    [InlineData("http://a.test:65536/")]
    [InlineData("http://a.test:8x/")]
    [InlineData("http://ex%61mple.test/")]
    [InlineData("http://a..test/")]
    [InlineData("http://a.test../")]
    [InlineData("http://a_b!.test/")]
    [InlineData("http://1.2.3.4.5/")]
    [InlineData("http://08.1.1.1/")]
    [InlineData("http://a.123/")]
    [InlineData("http://[::1/")]
    [InlineData("http://[fe80::1%25eth0]/")]
    [InlineData("http://[::1]x/")]
    [InlineData("gopher://a.test/")]
    public void Malformed_targets_are_refused(string input)
    {
        var (s, _, reason) = Parse(input);
        Assert.Equal(TargetStatus.Malformed, s);
        Assert.False(string.IsNullOrEmpty(reason));
    }

    [Theory]
    [InlineData("Example.COM.:443", "example.com", 443)]
    [InlineData("[::1]:8443", "::1", 8443)]
    [InlineData("0:22", "0.0.0.0", 22)]
    [InlineData("bücher.test:443", "xn--bcher-kva.test", 443)]
    public void Authority_form(string input, string host, int port)
    {
        Assert.Equal(TargetStatus.Ok, RequestTarget.ParseAuthority(input, out var h, out var p, out var reason));
        Assert.Equal(host, h);
        Assert.Equal(port, p);
        Assert.Null(reason);
    }

    [Theory]
    [InlineData("a.test")]
    [InlineData("a.test:0")]
    [InlineData("user@a.test:443")]
    [InlineData("a.test:443/x")]
    [InlineData(":443")]
    public void Authority_form_refused(string input) =>
        Assert.Equal(TargetStatus.Malformed, RequestTarget.ParseAuthority(input, out _, out _, out _));

    [Theory]
    [InlineData("http://user:secret@a.test/x", "http://a.test/x")]
    [InlineData("http://a.test/x@y", "http://a.test/x@y")]
    [InlineData("user:secret@a.test:443", "a.test:443")]
    [InlineData("/plain@path", "/plain@path")]
    [InlineData("http://u:p@@a.test", "http://a.test")]
    public void Redaction_cuts_userinfo(string input, string expected) => Assert.Equal(expected, RequestTarget.Redact(input));

    [Theory]
    [InlineData("GET http://u:pw@a.test/x", "GET http://a.test/x")]
    [InlineData("CONNECT u:pw@a.test:443", "CONNECT a.test:443")]
    [InlineData("RCPT TO:<bob@example.com>", "RCPT TO:<bob@example.com>")]
    [InlineData("MAIL FROM:<a@b.example> SIZE=10", "MAIL FROM:<a@b.example> SIZE=10")]
    [InlineData("GET /mail/a@b", "GET /mail/a@b")]
    public void Log_lines_lose_userinfo_and_nothing_else(string line, string expected) =>
        Assert.Equal(expected, Bastion.Observability.Redact.RequestLine(line));

    [Theory]
    [InlineData("bücher.test", "xn--bcher-kva.test")]
    [InlineData("BÜCHER.TEST.", "xn--bcher-kva.test")]
    [InlineData("Secret2.Site.Test.", "secret2.site.test")]
    [InlineData("[::FFFF:127.0.0.1]", "::ffff:127.0.0.1")]
    [InlineData("0177.0.0.1", "127.0.0.1")]
    [InlineData("_srv.example.com", "_srv.example.com")]
    public void Host_names(string input, string expected) => Assert.Equal(expected, HostName.Normalize(input));

    // Valid targets the properties are checked on, and the seeds of the mutation test.
    static readonly string[] Seeds =
    [
        "http://a.test/", "http://A.Test.:8080/a/./b/../c?x=%41&y=%2F#f", "http://user:pw@bücher.test/caf%C3%A9",
        "https://[::1]:8443/a%20b/%7e?q", "/origin/%2e%2e/x?y=1", "http://0x7f.1/a.ex%65", "http://h.test/a;b=c/d@e:f",
        "http://h.test/a/b/c/../../d/./e", "http://h.test/%E2%82%AC/%25/x", "http://h.test/~user/index.html?a=b&c=d",
    ];

    [Fact]
    public void Normalising_is_idempotent_and_reparsing_gives_the_same_attributes()
    {
        var rng = new Random(9);
        var inputs = Seeds.Concat(Enumerable.Range(0, 3000).Select(_ => RandomTarget(rng)));
        int ok = 0;
        foreach (var input in inputs)
        {
            var (s, t, _) = Parse(input);
            if (s != TargetStatus.Ok) continue;
            ok++;
            var (s2, t2, reason2) = Parse(t.Url);
            Assert.True(s2 == TargetStatus.Ok, $"{input} -> {t.Url} -> {s2} {reason2}");
            Assert.Equal(t.Url, t2.Url);
            Assert.Equal(t.Host, t2.Host);
            Assert.Equal(t.Port, t2.Port);
            Assert.Equal(t.PolicyPath, t2.PolicyPath);
            Assert.Equal(t.PathAndQuery, t2.PathAndQuery);
            // What is forwarded is what .NET's URI sends, byte for byte, with canonicalisation off.
            if (t.Host is not null)
            {
                var uri = new Uri(t.Url, new UriCreationOptions { DangerousDisablePathAndQueryCanonicalization = true });
                Assert.Equal(t.PathAndQuery, uri.PathAndQuery);
            }
        }
        Assert.True(ok > 1000, $"only {ok} random targets were valid");
    }

    [Fact]
    public void Every_prefix_and_random_mutations_never_throw()
    {
        var rng = new Random(99);
        foreach (var seed in Seeds)
        {
            var bytes = Encoding.UTF8.GetBytes(seed);
            for (int i = 0; i <= bytes.Length; i++) Check(bytes.AsSpan(0, i).ToArray());
            for (int m = 0; m < 500; m++)
            {
                var mutated = (byte[])bytes.Clone();
                int edits = rng.Next(1, 4);
                for (int e = 0; e < edits; e++)
                {
                    int at = rng.Next(mutated.Length);
                    switch (rng.Next(3))
                    {
                        case 0: mutated[at] = (byte)rng.Next(256); break;
                        case 1: mutated = [.. mutated.AsSpan(0, at), .. "%/.\\@:[]#?"u8.Slice(rng.Next(10), 1), .. mutated.AsSpan(at)]; break;
                        default: mutated = [.. mutated.AsSpan(0, at), .. mutated.AsSpan(Math.Min(mutated.Length, at + 1))]; break;
                    }
                    if (mutated.Length == 0) break;
                }
                Check(mutated);
            }
        }

        static void Check(byte[] input)
        {
            var t = new CanonicalTarget();
            var s = RequestTarget.Parse(input, AmbiguousTargets.Refuse, t, out var reason);
            Assert.True(s == TargetStatus.Ok || reason is not null, "a refusal carries a reason");
            if (s != TargetStatus.Ok) return;
            // Whatever got through is canonical: parsing the result again changes nothing.
            var again = new CanonicalTarget();
            Assert.Equal(TargetStatus.Ok, RequestTarget.Parse(t.Url, AmbiguousTargets.Refuse, again, out _));
            Assert.Equal(t.Url, again.Url);
            Assert.Equal(t.PolicyPath, again.PolicyPath);
            var pass = new CanonicalTarget();
            RequestTarget.Parse(input, AmbiguousTargets.Pass, pass, out _);
        }
    }

    static string RandomTarget(Random rng)
    {
        string[] hosts = ["a.test", "A.TEST.", "bücher.test", "127.1", "[::1]", "0", "x-y_z.example"];
        string[] segments = ["a", ".", "..", "%2e", "%2E%2e", "b%20c", "%7E", "%41", "d;e", "f@g", "h:i", "é", "%C3%A9", "~", "x.exe", ""];
        var sb = new StringBuilder(rng.Next(4) == 0 ? "" : $"http{(rng.Next(2) == 0 ? "" : "s")}://{hosts[rng.Next(hosts.Length)]}{(rng.Next(3) == 0 ? ":" + rng.Next(1, 65536) : "")}");
        int n = rng.Next(0, 6);
        for (int i = 0; i < n; i++) sb.Append('/').Append(segments[rng.Next(segments.Length)]);
        if (n == 0 || sb.Length == 0) sb.Append('/');
        if (rng.Next(2) == 0) sb.Append("?q=").Append(segments[rng.Next(segments.Length)]).Append("&r=%2F");
        if (rng.Next(4) == 0) sb.Append("#frag");
        return sb.ToString();
    }

    /// <summary>
    /// One CanonicalTarget reused per connection: a target seen again gives the same strings (nothing made again),
    /// and any sequence of targets, repeats and modes in between, gives exactly what a fresh parse gives.
    /// </summary>
    [Fact]
    public void A_reused_target_repeats_its_last_parse_and_otherwise_parses_afresh()
    {
        var reused = new CanonicalTarget();
        var first = RequestTarget.Parse("http://a.test/x/../y?q=1"u8, AmbiguousTargets.Refuse, reused, out _);
        Assert.Equal(TargetStatus.Ok, first);
        var (path, url) = (reused.Path, reused.Url);
        RequestTarget.Parse("http://a.test/x/../y?q=1"u8, AmbiguousTargets.Refuse, reused, out _);
        Assert.Same(path, reused.Path);
        Assert.Same(url, reused.Url);

        var rng = new Random(11);
        string[] targets = ["/a/b", "/a/b", "/a%2Fb", "http://b.test:8080/c?d", "/a/b", "http://a.test/%zz", "*", "/a/./b#f", "http://u@a.test/"];
        for (int i = 0; i < 2000; i++)
        {
            var target = targets[rng.Next(targets.Length)];
            var mode = rng.Next(3) == 0 ? AmbiguousTargets.Pass : AmbiguousTargets.Refuse;
            var bytes = Encoding.UTF8.GetBytes(target);
            var got = RequestTarget.Parse(bytes, mode, reused, out var gotReason);
            var fresh = new CanonicalTarget();
            var want = RequestTarget.Parse(bytes, mode, fresh, out var wantReason);
            Assert.Equal(want, got);
            Assert.Equal(wantReason, gotReason);
            Assert.Equal((fresh.Scheme, fresh.Host, fresh.Port, fresh.Path, fresh.Query, fresh.PolicyPath, fresh.Ambiguity, fresh.HadUserinfo, fresh.HadFragment),
                (reused.Scheme, reused.Host, reused.Port, reused.Path, reused.Query, reused.PolicyPath, reused.Ambiguity, reused.HadUserinfo, reused.HadFragment));
            if (rng.Next(2) == 0) reused.SetAuthority("http", "h.test", 81);
            if (rng.Next(2) == 0) fresh.SetAuthority("http", "h.test", 81);
            else if (reused.Host != fresh.Host) continue;
            if (reused.Host == fresh.Host && reused.Port == fresh.Port && reused.Scheme == fresh.Scheme) Assert.Equal(fresh.Url, reused.Url);
        }
    }
}
