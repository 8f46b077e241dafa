using System.Net;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Bastion.Gateway.Tls;
using Bastion.Tests.Infrastructure;

namespace Bastion.Tests.Tls;

/// <summary>`bastion ca init` and the certificates minted from its CA: what clients and chain builders check.</summary>
[System.Runtime.Versioning.UnsupportedOSPlatform("windows")]
public sealed class CertificateMintingTests
{
    static CertificateAuthority NewCa(bool rsa = false, params string[] constraints)
    {
        var dir = Path.Combine(Scratch.NewDir("ca"), "ca");
        CertificateAuthority.Create(dir, rsa, constraints);
        return CertificateAuthority.Load(dir);
    }

    static X509ChainStatusFlags Verify(X509Certificate2 leaf, CertificateAuthority ca, string? name = null)
    {
        using var chain = new X509Chain();
        chain.ChainPolicy.TrustMode = X509ChainTrustMode.CustomRootTrust;
        chain.ChainPolicy.CustomTrustStore.Add(ca.Certificate);
        chain.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;
        chain.ChainPolicy.ApplicationPolicy.Add(new Oid("1.3.6.1.5.5.7.3.1"));
        bool ok = chain.Build(leaf);
        var flags = X509ChainStatusFlags.NoError;
        foreach (var s in chain.ChainStatus) flags |= s.Status;
        if (ok) Assert.Equal(X509ChainStatusFlags.NoError, flags);
        if (name is not null && ok) Assert.True(leaf.MatchesHostname(name), $"{name} not in the certificate");
        return flags;
    }

    [Fact]
    public async Task Ca_init_writes_an_ecdsa_ca_with_a_private_key_file_and_refuses_to_overwrite()
    {
        var dir = Path.Combine(Scratch.NewDir("ca"), "inspection");
        var r = await Proc.BastionAsync(["ca", "init", dir]);
        Assert.True(r.ExitCode == 0, r.ToString());
        Assert.Contains("ECDSA P-256", r.Stdout);
        var keyMode = File.GetUnixFileMode(Path.Combine(dir, "ca.key"));
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, keyMode);
        using var ca = CertificateAuthority.Load(dir);
        Assert.False(ca.IsRsa);
        var bc = ca.Certificate.Extensions.OfType<X509BasicConstraintsExtension>().Single();
        Assert.True(bc.CertificateAuthority && bc.Critical && bc.HasPathLengthConstraint && bc.PathLengthConstraint == 0);
        var ku = ca.Certificate.Extensions.OfType<X509KeyUsageExtension>().Single();
        Assert.True(ku.KeyUsages.HasFlag(X509KeyUsageFlags.KeyCertSign));
        Assert.True(ca.Certificate.NotAfter > DateTime.UtcNow.AddYears(9));
        // openssl agrees it is a CA.
        var x = await Proc.RunAsync("openssl", ["x509", "-in", Path.Combine(dir, "ca.crt"), "-noout", "-text"]);
        Assert.Contains("CA:TRUE", x.Stdout);
        Assert.Contains("prime256v1", x.Stdout);

        var again = await Proc.BastionAsync(["ca", "init", dir]);
        Assert.Equal(2, again.ExitCode);
        Assert.Contains("already holds a CA", again.Stderr);
        Assert.Equal(ca.Thumbprint, CertificateAuthority.Load(dir).Thumbprint);
    }

    [Fact]
    public async Task Ca_init_rsa_and_name_constraints()
    {
        var dir = Path.Combine(Scratch.NewDir("ca"), "rsa");
        var r = await Proc.BastionAsync(["ca", "init", dir, "--rsa", "--name-constraint", "example.com", "--name-constraint", "corp.test"]);
        Assert.True(r.ExitCode == 0, r.ToString());
        var x = await Proc.RunAsync("openssl", ["x509", "-in", Path.Combine(dir, "ca.crt"), "-noout", "-text"]);
        Assert.Contains("Public-Key: (3072 bit)", x.Stdout);
        Assert.Contains("X509v3 Name Constraints: critical", x.Stdout);
        Assert.Contains("DNS:example.com", x.Stdout);
        using var ca = CertificateAuthority.Load(dir);
        Assert.True(ca.IsRsa);
        Assert.Equal(["example.com", "corp.test"], ca.PermittedDomains);
        Assert.True(ca.Permits("www.example.com") && ca.Permits("corp.test"));
        Assert.False(ca.Permits("badexample.com") || ca.Permits("example.org") || ca.Permits("127.0.0.1"));

        var bad = await Proc.BastionAsync(["ca", "init", Path.Combine(dir, "x"), "--name-constraint", "*.example.com"]);
        Assert.Equal(2, bad.ExitCode);
        Assert.Contains("is not a domain", bad.Stderr);
    }

    [Fact]
    public void Minted_leaf_has_san_validity_key_usage_and_identifiers_and_chains_to_the_ca()
    {
        using var ca = NewCa();
        using var minter = new CertificateMinter(ca);
        using var leaf = minter.Mint("www.example.com");
        Assert.True(leaf.HasPrivateKey);
        var san = leaf.Extensions.OfType<X509SubjectAlternativeNameExtension>().Single();
        Assert.Equal(["www.example.com"], san.EnumerateDnsNames());
        Assert.Equal(ca.Certificate.SubjectName.RawData, leaf.IssuerName.RawData);

        var now = DateTime.UtcNow;
        Assert.InRange(leaf.NotBefore.ToUniversalTime(), now - CertificateMinter.Backdate - TimeSpan.FromMinutes(1), now - TimeSpan.FromMinutes(30));
        Assert.InRange(leaf.NotAfter.ToUniversalTime(), now + CertificateMinter.Lifetime - TimeSpan.FromMinutes(1), now + CertificateMinter.Lifetime + TimeSpan.FromMinutes(1));
        Assert.True(leaf.NotAfter <= ca.Certificate.NotAfter);

        var ku = leaf.Extensions.OfType<X509KeyUsageExtension>().Single();
        Assert.Equal(X509KeyUsageFlags.DigitalSignature, ku.KeyUsages);
        Assert.True(ku.Critical);
        var eku = leaf.Extensions.OfType<X509EnhancedKeyUsageExtension>().Single();
        Assert.Equal("1.3.6.1.5.5.7.3.1", Assert.Single(eku.EnhancedKeyUsages.Cast<Oid>()).Value);
        var bc = leaf.Extensions.OfType<X509BasicConstraintsExtension>().Single();
        Assert.False(bc.CertificateAuthority);

        var caSki = ca.Certificate.Extensions.OfType<X509SubjectKeyIdentifierExtension>().Single();
        var aki = leaf.Extensions.OfType<X509AuthorityKeyIdentifierExtension>().Single();
        Assert.Equal(caSki.SubjectKeyIdentifierBytes.ToArray(), aki.KeyIdentifier!.Value.ToArray());
        var ski = leaf.Extensions.OfType<X509SubjectKeyIdentifierExtension>().Single();
        Assert.NotEqual(caSki.SubjectKeyIdentifier, ski.SubjectKeyIdentifier);

        Assert.Equal(X509ChainStatusFlags.NoError, Verify(leaf, ca, "www.example.com"));
        Assert.False(leaf.MatchesHostname("other.example.com"));
    }

    [Fact]
    public void Serials_are_random_and_the_leaf_key_is_reused()
    {
        using var ca = NewCa();
        using var minter = new CertificateMinter(ca);
        using var a = minter.Mint("a.example");
        using var b = minter.Mint("b.example");
        Assert.NotEqual(a.SerialNumber, b.SerialNumber);
        Assert.True(a.GetSerialNumber().Length >= 16);
        Assert.Equal(a.PublicKey.EncodedKeyValue.RawData, b.PublicKey.EncodedKeyValue.RawData);
        using var other = new CertificateMinter(ca);
        using var c = other.Mint("a.example");
        Assert.NotEqual(a.PublicKey.EncodedKeyValue.RawData, c.PublicKey.EncodedKeyValue.RawData);
    }

    [Fact]
    public void Ip_literal_gets_an_ip_san_and_rsa_ca_gets_rsa_leaves_with_key_encipherment()
    {
        using var ca = NewCa(rsa: true);
        using var minter = new CertificateMinter(ca);
        using var leaf = minter.Mint("127.0.0.1");
        var san = leaf.Extensions.OfType<X509SubjectAlternativeNameExtension>().Single();
        Assert.Equal([IPAddress.Loopback], san.EnumerateIPAddresses());
        Assert.Empty(san.EnumerateDnsNames());
        Assert.NotNull(leaf.GetRSAPublicKey());
        var ku = leaf.Extensions.OfType<X509KeyUsageExtension>().Single();
        Assert.Equal(X509KeyUsageFlags.DigitalSignature | X509KeyUsageFlags.KeyEncipherment, ku.KeyUsages);
        Assert.Equal(X509ChainStatusFlags.NoError, Verify(leaf, ca, "127.0.0.1"));
    }

    [Fact]
    public void Name_constraints_are_enforced_by_chain_building()
    {
        using var ca = NewCa(false, "example.com");
        using var minter = new CertificateMinter(ca);
        using var inside = minter.Mint("shop.example.com");
        Assert.Equal(X509ChainStatusFlags.NoError, Verify(inside, ca, "shop.example.com"));
        using var outside = minter.Mint("bank.test");
        Assert.NotEqual(X509ChainStatusFlags.NoError, Verify(outside, ca));
    }

    [Fact]
    public void Long_names_get_no_common_name_but_still_a_san()
    {
        using var ca = NewCa();
        using var minter = new CertificateMinter(ca);
        var name = string.Join('.', Enumerable.Repeat("label12345", 8)) + ".example";
        using var leaf = minter.Mint(name);
        Assert.DoesNotContain("CN=", leaf.Subject);
        Assert.Equal(X509ChainStatusFlags.NoError, Verify(leaf, ca, name));
    }

    [Fact]
    public async Task Cache_mints_once_for_concurrent_asks_and_stays_bounded()
    {
        var ca = NewCa();
        var cache = new MintedCertificateCache(ca, capacity: 3);
        var asks = Enumerable.Range(0, 50).Select(_ => cache.GetAsync("same.example")).ToArray();
        var contexts = await Task.WhenAll(asks);
        Assert.All(contexts, c => Assert.Same(contexts[0], c));
        Assert.Equal(1, cache.Minted);
        Assert.Equal(49, cache.Hits);
        Assert.Equal("same.example", contexts[0].TargetCertificate.GetNameInfo(X509NameType.DnsName, false));

        foreach (var n in new[] { "a.example", "b.example", "c.example" }) await cache.GetAsync(n);
        Assert.Equal(3, cache.Count);
        // same.example was least recently used: gone, so asking again mints again.
        await cache.GetAsync("same.example");
        Assert.Equal(5, cache.Minted);
        Assert.Equal(3, cache.Count);
        Assert.True(cache.MeanMintMs > 0);
    }

    [Fact]
    public void Load_reports_a_key_that_does_not_match_and_a_non_ca_certificate()
    {
        var root = Scratch.NewDir("ca");
        CertificateAuthority.Create(Path.Combine(root, "one"), false, []);
        CertificateAuthority.Create(Path.Combine(root, "two"), false, []);
        File.Copy(Path.Combine(root, "two", "ca.key"), Path.Combine(root, "one", "ca.key"), overwrite: true);
        var e = Assert.Throws<CaException>(() => CertificateAuthority.Load(Path.Combine(root, "one")));
        Assert.Contains("does not belong to", e.Message);

        var leafDir = Directory.CreateDirectory(Path.Combine(root, "leaf")).FullName;
        TestCerts.WritePem(leafDir, "ca", TestCerts.Localhost());
        e = Assert.Throws<CaException>(() => CertificateAuthority.Load(leafDir));
        Assert.Contains("not a CA certificate", e.Message);

        e = Assert.Throws<CaException>(() => CertificateAuthority.Load(Path.Combine(root, "missing")));
        Assert.Contains("bastion ca init", e.Message);
    }
}
