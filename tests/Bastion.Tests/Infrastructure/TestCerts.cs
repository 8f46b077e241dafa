using System.Net;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace Bastion.Tests.Infrastructure;

/// <summary>Self-signed certificates made in-process for TLS origins and listeners, and written as PEM when a config needs files.</summary>
public static class TestCerts
{
    static readonly Lazy<X509Certificate2> LocalhostCert = new(() => Make("localhost", ["localhost"], [IPAddress.Loopback]));

    public static X509Certificate2 Localhost() => LocalhostCert.Value;

    public static X509Certificate2 Make(string cn, string[] dnsNames, IPAddress[]? ips = null)
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var req = new CertificateRequest($"CN={cn}", key, HashAlgorithmName.SHA256);
        var san = new SubjectAlternativeNameBuilder();
        foreach (var d in dnsNames) san.AddDnsName(d);
        foreach (var ip in ips ?? []) san.AddIpAddress(ip);
        req.CertificateExtensions.Add(san.Build());
        req.CertificateExtensions.Add(new X509BasicConstraintsExtension(false, false, 0, false));
        req.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension([new Oid("1.3.6.1.5.5.7.3.1")], false));
        using var cert = req.CreateSelfSigned(DateTimeOffset.UtcNow.AddDays(-1), DateTimeOffset.UtcNow.AddDays(30));
        // Round-trip through PKCS#12 so that SslStream can use the private key on Linux.
        return X509CertificateLoader.LoadPkcs12(cert.Export(X509ContentType.Pkcs12), null);
    }

    /// <summary>Writes cert and key as PEM files into a folder; returns their paths.</summary>
    public static (string Cert, string Key) WritePem(string dir, string name, X509Certificate2 cert)
    {
        var certPath = Path.Combine(dir, $"{name}.crt");
        var keyPath = Path.Combine(dir, $"{name}.key");
        File.WriteAllText(certPath, cert.ExportCertificatePem());
        using var key = cert.GetECDsaPrivateKey() ?? throw new InvalidOperationException("no key");
        File.WriteAllText(keyPath, key.ExportPkcs8PrivateKeyPem());
        return (certPath, keyPath);
    }
}
