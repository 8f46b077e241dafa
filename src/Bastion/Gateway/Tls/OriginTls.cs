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
/// Opens TLS to an origin as a careful client would: full verification (<see cref="OriginVerifier"/>: the system
/// store plus the `upstream_ca` roots), except hosts listed in `insecure_upstream`. A refused certificate comes
/// back with a sentence naming the problem (expired, wrong name, untrusted issuer), for the error page and the log.
/// </summary>
public static class OriginTls
{
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
            CertificateChainPolicy = settings.Verifier.HandshakePolicy(),
            RemoteCertificateValidationCallback = (_, cert, chain, errors) =>
            {
                if (insecure) return true;
                problem = settings.Verifier.Verify(targetHost, cert as X509Certificate2, chain, errors);
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

    static string Innermost(Exception e)
    {
        while (e.InnerException is not null) e = e.InnerException;
        return e.Message;
    }
}
