using System.Net;
using System.Net.Security;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace Bastion.Gateway.Tls;

/// <summary>
/// Makes the leaf certificates a client sees during inspection: one per server name, signed by the inspection CA,
/// all on one leaf key (a key pair per certificate would cost a key generation per name for nothing: the key
/// never leaves the gateway). Short-lived, and never outliving the CA.
/// </summary>
public sealed class CertificateMinter : IDisposable
{
    /// <summary>How long a minted certificate is valid; the cache replaces it well before it ends.</summary>
    public static readonly TimeSpan Lifetime = TimeSpan.FromDays(7);
    /// <summary>How far back a certificate's validity starts, for clients whose clocks run behind.</summary>
    public static readonly TimeSpan Backdate = TimeSpan.FromHours(1);

    readonly CertificateAuthority _ca;
    readonly AsymmetricAlgorithm _leafKey;
    readonly X509SignatureGenerator _signer;
    readonly X509AuthorityKeyIdentifierExtension _aki;
    readonly X509Certificate2Collection _chain;

    public CertificateAuthority Ca => _ca;

    public CertificateMinter(CertificateAuthority ca)
    {
        _ca = ca;
        // RSA CAs exist for old clients; those get an RSA leaf too.
        _leafKey = ca.IsRsa ? RSA.Create(2048) : ECDsa.Create(ECCurve.NamedCurves.nistP256);
        _signer = ca.Key is RSA rsa
            ? X509SignatureGenerator.CreateForRSA(rsa, RSASignaturePadding.Pkcs1)
            : X509SignatureGenerator.CreateForECDsa((ECDsa)ca.Key);
        _aki = X509AuthorityKeyIdentifierExtension.CreateFromCertificate(ca.Certificate, includeKeyIdentifier: true, includeIssuerAndSerial: false);
        _chain = [ca.Certificate];
    }

    /// <summary>A certificate (with the leaf key) for <paramref name="name"/>, a DNS name or an IP literal.</summary>
    public X509Certificate2 Mint(string name)
    {
        var now = DateTimeOffset.UtcNow;
        var caFrom = new DateTimeOffset(_ca.Certificate.NotBefore.ToUniversalTime());
        var caTo = new DateTimeOffset(_ca.Certificate.NotAfter.ToUniversalTime());
        var notBefore = Max(now - Backdate, caFrom);
        var notAfter = Min(now + Lifetime, caTo);
        if (notAfter <= now) throw new CaException($"the inspection CA expired on {caTo:yyyy-MM-dd}");

        bool ip = IPAddress.TryParse(name, out var address);
        // CN is at most 64 characters (RFC 5280 upper bound); the SAN is what clients check anyway.
        var subject = new X500DistinguishedNameBuilder();
        if (name.Length <= 64) subject.AddCommonName(name);
        subject.AddOrganizationName("Bastion inspection");
        var req = _leafKey is RSA rsa
            ? new CertificateRequest(subject.Build(), rsa, HashAlgorithmName.SHA256, RSASignaturePadding.Pkcs1)
            : new CertificateRequest(subject.Build(), (ECDsa)_leafKey, HashAlgorithmName.SHA256);
        var san = new SubjectAlternativeNameBuilder();
        if (ip) san.AddIpAddress(address!);
        else san.AddDnsName(name);
        req.CertificateExtensions.Add(new X509BasicConstraintsExtension(false, false, 0, true));
        var usage = X509KeyUsageFlags.DigitalSignature | (_leafKey is RSA ? X509KeyUsageFlags.KeyEncipherment : 0);
        req.CertificateExtensions.Add(new X509KeyUsageExtension(usage, true));
        req.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension([new Oid("1.3.6.1.5.5.7.3.1")], false));
        req.CertificateExtensions.Add(san.Build());
        req.CertificateExtensions.Add(new X509SubjectKeyIdentifierExtension(req.PublicKey, false));
        req.CertificateExtensions.Add(_aki);

        // A random positive 128-bit serial (RFC 5280 §4.1.2.2 allows 20 octets; CAs use at least 64 random bits).
        var serial = RandomNumberGenerator.GetBytes(16);
        serial[0] &= 0x7f;
        serial[0] |= 0x01;
        using var cert = req.Create(_ca.Certificate.SubjectName, _signer, notBefore, notAfter, serial);
        return _leafKey switch
        {
            RSA r => cert.CopyWithPrivateKey(r),
            ECDsa e => cert.CopyWithPrivateKey(e),
            _ => throw new InvalidOperationException("leaf key type"),
        };
    }

    /// <summary>What SslStream serves for the name: the minted leaf and the CA behind it.</summary>
    public SslStreamCertificateContext MintContext(string name) =>
        SslStreamCertificateContext.Create(Mint(name), _chain, offline: true);

    static DateTimeOffset Max(DateTimeOffset a, DateTimeOffset b) => a > b ? a : b;
    static DateTimeOffset Min(DateTimeOffset a, DateTimeOffset b) => a < b ? a : b;

    public void Dispose() => _leafKey.Dispose();
}
