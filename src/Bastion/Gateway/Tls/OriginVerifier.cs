using System.Collections.Concurrent;
using System.Net.Security;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace Bastion.Gateway.Tls;

/// <summary>
/// Decides whether an origin's certificate is good for the name asked: the system store, then the `upstream_ca`
/// roots, and the name. Chain building is the dearest part of a handshake in .NET (about a millisecond, more with
/// a large trust store), so a certificate that passed for a host is remembered for a few minutes (never past its
/// own end): the same origin certificate on the next connection is checked by its SHA-256 instead of a new chain.
/// SslStream's own chain is built against a small policy (the extra roots only) and its verdict on the chain is
/// not used; its verdict on the name is. No revocation checks and no downloads of missing intermediates: the
/// gateway makes no network calls the configuration did not ask for.
/// </summary>
public sealed class OriginVerifier(X509Certificate2Collection extraRoots)
{
    static readonly Oid ServerAuth = new("1.3.6.1.5.5.7.3.1");
    static readonly TimeSpan Remember = TimeSpan.FromMinutes(5);
    const int MaxRemembered = 4096;
    readonly ConcurrentDictionary<(string Host, string Thumbprint), DateTime> _passed = new();

    /// <summary>For SslStream: a chain policy that keeps its own chain building cheap (the real check is <see cref="Verify"/>).</summary>
    public X509ChainPolicy HandshakePolicy()
    {
        var p = new X509ChainPolicy
        {
            TrustMode = X509ChainTrustMode.CustomRootTrust,
            RevocationMode = X509RevocationMode.NoCheck,
            DisableCertificateDownloads = true,
        };
        p.CustomTrustStore.AddRange(extraRoots);
        return p;
    }

    /// <summary>Null when the certificate is good for <paramref name="host"/>; otherwise what is wrong with it.</summary>
    /// <param name="chain">SslStream's chain: its extra store holds the intermediates the origin sent.</param>
    public string? Verify(string host, X509Certificate2? cert, X509Chain? chain, SslPolicyErrors errors)
    {
        if (cert is null || errors.HasFlag(SslPolicyErrors.RemoteCertificateNotAvailable)) return $"{host} sent no certificate";
        if (errors.HasFlag(SslPolicyErrors.RemoteCertificateNameMismatch))
            return $"the certificate of {host} is for {Names(cert)}, not {host}";
        var now = DateTime.UtcNow;
        var key = (host, cert.GetCertHashString(HashAlgorithmName.SHA256));
        if (_passed.TryGetValue(key, out var until) && now < until) return null;

        string? problem;
        using (var system = NewChain(X509ChainTrustMode.System, chain))
        {
            problem = system.Build(cert) ? null : Describe(host, cert, system);
        }
        if (problem is not null && extraRoots.Count > 0)
        {
            using var custom = NewChain(X509ChainTrustMode.CustomRootTrust, chain);
            custom.ChainPolicy.CustomTrustStore.AddRange(extraRoots);
            problem = custom.Build(cert) ? null : Describe(host, cert, custom);
        }
        if (problem is null)
        {
            if (_passed.Count >= MaxRemembered) _passed.Clear();
            var end = cert.NotAfter.ToUniversalTime();
            _passed[key] = now + Remember < end ? now + Remember : end;
        }
        return problem;
    }

    static X509Chain NewChain(X509ChainTrustMode trust, X509Chain? sent)
    {
        var c = new X509Chain();
        c.ChainPolicy.TrustMode = trust;
        c.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;
        c.ChainPolicy.DisableCertificateDownloads = true;
        c.ChainPolicy.ApplicationPolicy.Add(ServerAuth);
        if (sent is not null) c.ChainPolicy.ExtraStore.AddRange(sent.ChainPolicy.ExtraStore);
        return c;
    }

    static string Describe(string host, X509Certificate2 cert, X509Chain chain)
    {
        var flags = X509ChainStatusFlags.NoError;
        foreach (var s in chain.ChainStatus) flags |= s.Status;
        var now = DateTime.Now;
        if (flags.HasFlag(X509ChainStatusFlags.NotTimeValid))
        {
            if (cert.NotAfter < now) return $"the certificate of {host} expired on {cert.NotAfter.ToUniversalTime():yyyy-MM-dd HH:mm} UTC";
            if (cert.NotBefore > now) return $"the certificate of {host} is not valid before {cert.NotBefore.ToUniversalTime():yyyy-MM-dd HH:mm} UTC";
            return $"a certificate in the chain of {host} is outside its validity";
        }
        if (flags.HasFlag(X509ChainStatusFlags.Revoked)) return $"the certificate of {host} is revoked";
        if (flags.HasFlag(X509ChainStatusFlags.UntrustedRoot) || flags.HasFlag(X509ChainStatusFlags.PartialChain))
            return $"the certificate of {host} is issued by {cert.Issuer}, which is not trusted (neither the system store nor tls_inspection.upstream_ca)";
        if (flags.HasFlag(X509ChainStatusFlags.NotValidForUsage)) return $"the certificate of {host} is not for TLS servers";
        var first = chain.ChainStatus.Length > 0 ? chain.ChainStatus[0].StatusInformation.Trim() : flags.ToString();
        return $"the certificate of {host} was refused: {first}";
    }

    static string Names(X509Certificate2 cert)
    {
        var names = new List<string>();
        foreach (var ext in cert.Extensions)
            if (ext is X509SubjectAlternativeNameExtension san)
            {
                names.AddRange(san.EnumerateDnsNames());
                names.AddRange(san.EnumerateIPAddresses().Select(a => a.ToString()));
            }
        if (names.Count == 0) names.Add(cert.GetNameInfo(X509NameType.SimpleName, false));
        return names.Count > 4 ? string.Join(", ", names.Take(4)) + $" and {names.Count - 4} more" : string.Join(", ", names);
    }
}
