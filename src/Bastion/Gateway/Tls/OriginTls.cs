using System.Net.Security;
using System.Security.Authentication;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace Bastion.Gateway.Tls;

/// <summary>The gateway's TLS leg to an origin: the stream and the protocol it agreed, or why it could not be had.</summary>
public sealed record OriginHandshake(SslStream? Stream, SslApplicationProtocol Protocol, string? Error, bool CertificateRejected)
{
    public bool Ok => Stream is not null;
}

/// <summary>
/// Opens TLS to an origin as a careful client would: full verification against the system store, plus the
/// `upstream_ca` roots, except hosts listed in `insecure_upstream`. A refused certificate comes back with a
/// sentence naming the problem (expired, wrong name, untrusted issuer, revoked), for the error page and the log.
/// Revocation is not checked online: the gateway makes no network calls the configuration did not ask for.
/// </summary>
public static class OriginTls
{
    static readonly Oid ServerAuth = new("1.3.6.1.5.5.7.3.1");

    public static async Task<OriginHandshake> HandshakeAsync(Stream transport, string targetHost, List<SslApplicationProtocol>? alpn,
        InspectionSettings settings, TimeSpan timeout, CancellationToken ct)
    {
        string? problem = null;
        bool insecure = settings.IsInsecureUpstream(targetHost);
        var ssl = new SslStream(transport, leaveInnerStreamOpen: false);
        var options = new SslClientAuthenticationOptions
        {
            TargetHost = targetHost,
            ApplicationProtocols = alpn is { Count: > 0 } ? alpn : null,
            CertificateRevocationCheckMode = X509RevocationMode.NoCheck,
            RemoteCertificateValidationCallback = (_, cert, chain, errors) =>
            {
                if (insecure) return true;
                problem = Verify(targetHost, cert as X509Certificate2, chain, errors, settings.UpstreamRoots);
                return problem is null;
            },
        };
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(ct);
        cts.CancelAfter(timeout);
        try
        {
            await ssl.AuthenticateAsClientAsync(options, cts.Token).ConfigureAwait(false);
            return new OriginHandshake(ssl, ssl.NegotiatedApplicationProtocol, null, false);
        }
        catch (Exception e) when (e is AuthenticationException or IOException or OperationCanceledException or System.ComponentModel.Win32Exception)
        {
            await ssl.DisposeAsync().ConfigureAwait(false);
            if (problem is not null) return new OriginHandshake(null, default, problem, true);
            if (e is OperationCanceledException && !ct.IsCancellationRequested)
                return new OriginHandshake(null, default, $"TLS handshake with {targetHost} took longer than {timeout.TotalSeconds:0.#}s", false);
            if (e is OperationCanceledException) throw;
            return new OriginHandshake(null, default, $"TLS handshake with {targetHost} failed: {Innermost(e)}", false);
        }
    }

    /// <summary>Null when the certificate is good for <paramref name="host"/>; otherwise what is wrong with it.</summary>
    public static string? Verify(string host, X509Certificate2? cert, X509Chain? chain, SslPolicyErrors errors, X509Certificate2Collection extraRoots)
    {
        if (cert is null || errors.HasFlag(SslPolicyErrors.RemoteCertificateNotAvailable)) return $"{host} sent no certificate";
        if (errors.HasFlag(SslPolicyErrors.RemoteCertificateNameMismatch))
            return $"the certificate of {host} is for {Names(cert)}, not {host}";
        if (errors == SslPolicyErrors.None) return null;
        // The system store did not vouch for it: try again with the configured extra roots.
        if (extraRoots.Count > 0)
        {
            using var custom = new X509Chain();
            custom.ChainPolicy.TrustMode = X509ChainTrustMode.CustomRootTrust;
            custom.ChainPolicy.CustomTrustStore.AddRange(extraRoots);
            if (chain is not null) custom.ChainPolicy.ExtraStore.AddRange(chain.ChainPolicy.ExtraStore);
            custom.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;
            custom.ChainPolicy.ApplicationPolicy.Add(ServerAuth);
            if (custom.Build(cert)) return null;
            return Describe(host, cert, custom);
        }
        return chain is null ? $"the certificate of {host} could not be verified" : Describe(host, cert, chain);
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

    static string Innermost(Exception e)
    {
        while (e.InnerException is not null) e = e.InnerException;
        return e.Message;
    }
}
