using System.Net;
using System.Net.Security;
using System.Security.Cryptography.X509Certificates;
using Bastion.Configuration;

namespace Bastion.Protocols.Ftp;

/// <summary>
/// An ftp listener's configuration made ready for sessions: certificates loaded, the server's trust prepared, the
/// passive address parsed. Built once per configuration snapshot (certificates are not read per session).
/// </summary>
public sealed class FtpSettings
{
    public FtpConfig Ftp { get; }
    /// <summary>AUTH TLS towards clients; null without `ftp.tls`.</summary>
    public SslServerAuthenticationOptions? ClientTls { get; }
    public IPAddress? PassiveAddress { get; }
    public FtpDataMode DataMode { get; }
    public UpstreamTlsMode UpstreamTls { get; }
    /// <summary>Where PASV/EPSV listeners are opened (`passive_ports`).</summary>
    public PassivePorts Ports { get; }
    readonly X509Certificate2Collection? _upstreamCa;

    public FtpSettings(BastionConfig root, FtpConfig ftp)
    {
        Ftp = ftp;
        Ports = new PassivePorts(ftp.PassiveLow, ftp.PassiveHigh);
        DataMode = ftp.DataMode switch { "active" => FtpDataMode.Active, "keep" => FtpDataMode.Keep, _ => FtpDataMode.Passive };
        UpstreamTls = ftp.UpstreamTls switch { "required" => UpstreamTlsMode.Required, "opportunistic" => UpstreamTlsMode.Opportunistic, _ => UpstreamTlsMode.Off };
        if (ftp.PassiveAddress is { } pa && IPAddress.TryParse(pa, out var ip)) PassiveAddress = ip;
        if (ftp.Tls is { } tls)
        {
            var certs = new HttpReverse.ServerCertificates(root, [tls]);
            ClientTls = new SslServerAuthenticationOptions
            {
                ServerCertificateContext = certs.Select(null),
                ClientCertificateRequired = false,
            };
        }
        if (ftp.UpstreamCa is { } ca)
        {
            _upstreamCa = [];
            _upstreamCa.ImportFromPemFile(root.Resolve(ca));
        }
    }

    /// <summary>
    /// TLS towards the server. `required` verifies the certificate (system store plus `upstream_ca`) for the
    /// upstream's name; `opportunistic` encrypts without verifying, as opportunistic TLS does (it only defeats
    /// passive listening).
    /// </summary>
    public SslClientAuthenticationOptions UpstreamTlsOptions(string host) => new()
    {
        TargetHost = host,
        RemoteCertificateValidationCallback = UpstreamTls == UpstreamTlsMode.Required ? VerifyUpstream : static (_, _, _, _) => true,
    };

    bool VerifyUpstream(object sender, X509Certificate? cert, X509Chain? chain, SslPolicyErrors errors)
    {
        if (errors == SslPolicyErrors.None) return true;
        if (cert is null || _upstreamCa is null || (errors & SslPolicyErrors.RemoteCertificateNameMismatch) != 0) return false;
        // Not trusted by the system store: try again with the configured bundle as the only roots.
        using var custom = new X509Chain();
        custom.ChainPolicy.TrustMode = X509ChainTrustMode.CustomRootTrust;
        custom.ChainPolicy.CustomTrustStore.AddRange(_upstreamCa);
        custom.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;
        return custom.Build(cert as X509Certificate2 ?? X509CertificateLoader.LoadCertificate(cert.GetRawCertData()));
    }
}

public enum FtpDataMode : byte { Passive, Active, Keep }

public enum UpstreamTlsMode : byte { Off, Opportunistic, Required }
