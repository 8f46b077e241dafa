using System.Formats.Asn1;
using System.Net;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace Bastion.Gateway.Tls;

/// <summary>
/// The TLS-inspection CA: a certificate and its key in one folder (`ca.crt`, `ca.key`), made by `bastion ca init`
/// and named by `tls_inspection.ca`. Loading checks what an operator can get wrong: files readable, key matching
/// the certificate, a CA certificate, still valid.
/// </summary>
public sealed class CertificateAuthority : IDisposable
{
    public const string CertFile = "ca.crt", KeyFile = "ca.key";

    public X509Certificate2 Certificate { get; }
    /// <summary>ECDsa or RSA.</summary>
    public AsymmetricAlgorithm Key { get; }
    public bool IsRsa => Key is RSA;
    /// <summary>SHA-256 of the certificate: what identifies this CA across reloads.</summary>
    public string Thumbprint { get; }
    /// <summary>dNSName subtrees from a name-constraints extension; empty when unconstrained.</summary>
    public IReadOnlyList<string> PermittedDomains { get; }
    public bool ExcludesIpAddresses { get; }

    CertificateAuthority(X509Certificate2 cert, AsymmetricAlgorithm key)
    {
        Certificate = cert;
        Key = key;
        Thumbprint = cert.GetCertHashString(HashAlgorithmName.SHA256);
        (PermittedDomains, ExcludesIpAddresses) = NameConstraints.Read(cert);
    }

    /// <summary>Whether a certificate for this name would chain under the CA's name constraints.</summary>
    public bool Permits(string name)
    {
        if (IPAddress.TryParse(name, out _)) return !ExcludesIpAddresses;
        if (PermittedDomains.Count == 0) return true;
        foreach (var d in PermittedDomains)
            if (name.Equals(d, StringComparison.OrdinalIgnoreCase)
                || (name.Length > d.Length && name.EndsWith(d, StringComparison.OrdinalIgnoreCase) && name[name.Length - d.Length - 1] == '.'))
                return true;
        return false;
    }

    /// <summary>Loads `ca.crt` and `ca.key` from <paramref name="dir"/>; throws <see cref="CaException"/> saying what is wrong.</summary>
    public static CertificateAuthority Load(string dir)
    {
        if (!Directory.Exists(dir)) throw new CaException($"{dir} is not a folder (make one with 'bastion ca init {dir}')");
        var certPath = Path.Combine(dir, CertFile);
        var keyPath = Path.Combine(dir, KeyFile);
        X509Certificate2 cert;
        try { cert = X509Certificate2.CreateFromPem(File.ReadAllText(certPath)); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { throw new CaException($"cannot read {certPath}: {e.Message}"); }
        catch (CryptographicException e) { throw new CaException($"{certPath} holds no PEM certificate: {e.Message}"); }
        string keyText;
        try { keyText = File.ReadAllText(keyPath); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { throw new CaException($"cannot read {keyPath}: {e.Message}"); }

        AsymmetricAlgorithm key;
        try
        {
            if (cert.GetECDsaPublicKey() is { } ecPub)
            {
                ecPub.Dispose();
                var ec = ECDsa.Create();
                ec.ImportFromPem(keyText);
                key = ec;
            }
            else if (cert.GetRSAPublicKey() is { } rsaPub)
            {
                rsaPub.Dispose();
                var rsa = RSA.Create();
                rsa.ImportFromPem(keyText);
                key = rsa;
            }
            else throw new CaException($"{certPath}: the CA key must be ECDSA or RSA");
        }
        catch (Exception e) when (e is CryptographicException or ArgumentException)
        {
            throw new CaException($"{keyPath} holds no usable private key of the certificate's type: {e.Message}");
        }
        if (!key.ExportSubjectPublicKeyInfo().AsSpan().SequenceEqual(cert.PublicKey.ExportSubjectPublicKeyInfo()))
        {
            key.Dispose();
            throw new CaException($"{keyPath} does not belong to {certPath} (the public keys differ)");
        }
        var bc = cert.Extensions.OfType<X509BasicConstraintsExtension>().FirstOrDefault();
        if (bc is not { CertificateAuthority: true })
            throw new CaException($"{certPath} is not a CA certificate (basic constraints CA:TRUE missing)");
        if (cert.Extensions.OfType<X509KeyUsageExtension>().FirstOrDefault() is { } ku && (ku.KeyUsages & X509KeyUsageFlags.KeyCertSign) == 0)
            throw new CaException($"{certPath} may not sign certificates (key usage lacks keyCertSign)");
        var now = DateTime.UtcNow;
        if (cert.NotAfter.ToUniversalTime() <= now) throw new CaException($"{certPath} expired on {cert.NotAfter.ToUniversalTime():yyyy-MM-dd}");
        if (cert.NotBefore.ToUniversalTime() > now.AddMinutes(5)) throw new CaException($"{certPath} is not valid before {cert.NotBefore.ToUniversalTime():yyyy-MM-dd HH:mm}Z");
        return new CertificateAuthority(cert, key);
    }

    /// <summary>
    /// Makes a new CA in <paramref name="dir"/> (ECDSA P-256, or RSA 3072), valid for ten years; the key file is
    /// created with mode 0600. Refuses to overwrite either file.
    /// </summary>
    public static (string CertPath, string KeyPath) Create(string dir, bool rsa, IReadOnlyList<string> nameConstraints)
    {
        var certPath = Path.Combine(dir, CertFile);
        var keyPath = Path.Combine(dir, KeyFile);
        if (File.Exists(certPath) || File.Exists(keyPath))
            throw new CaException($"{dir} already holds a CA ({CertFile} or {KeyFile}); remove them first to make a new one");
        using AsymmetricAlgorithm key = rsa ? RSA.Create(3072) : ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var id = Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(4));
        // A unique name: browsers' stores (NSS) get confused by two CAs with the same subject.
        var subject = new X500DistinguishedName($"CN=Bastion inspection CA {id}, O=Bastion");
        var req = key is RSA r
            ? new CertificateRequest(subject, r, HashAlgorithmName.SHA256, RSASignaturePadding.Pkcs1)
            : new CertificateRequest(subject, (ECDsa)key, HashAlgorithmName.SHA256);
        req.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, true, 0, true));
        req.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.KeyCertSign | X509KeyUsageFlags.CrlSign | X509KeyUsageFlags.DigitalSignature, true));
        req.CertificateExtensions.Add(new X509SubjectKeyIdentifierExtension(req.PublicKey, false));
        if (nameConstraints.Count > 0) req.CertificateExtensions.Add(NameConstraints.Build(nameConstraints));
        var now = DateTimeOffset.UtcNow;
        using var cert = req.CreateSelfSigned(now.AddHours(-1), now.AddYears(10));

        Directory.CreateDirectory(dir);
        var keyPem = key is RSA rk ? rk.ExportPkcs8PrivateKeyPem() : ((ECDsa)key).ExportPkcs8PrivateKeyPem();
        var keyOptions = new FileStreamOptions { Mode = FileMode.CreateNew, Access = FileAccess.Write };
        if (!OperatingSystem.IsWindows()) keyOptions.UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite;
        using (var w = new StreamWriter(keyPath, keyOptions)) w.Write(keyPem);
        using (var w = new StreamWriter(certPath, new FileStreamOptions { Mode = FileMode.CreateNew, Access = FileAccess.Write }))
            w.Write(cert.ExportCertificatePem() + "\n");
        return (certPath, keyPath);
    }

    public void Dispose()
    {
        Key.Dispose();
        Certificate.Dispose();
    }
}

public sealed class CaException(string message) : Exception(message);

/// <summary>RFC 5280 §4.2.1.10 name constraints: permitted dNSName subtrees, and all IP addresses excluded.</summary>
static class NameConstraints
{
    const string Oid = "2.5.29.30";

    public static X509Extension Build(IReadOnlyList<string> domains)
    {
        var w = new AsnWriter(AsnEncodingRules.DER);
        using (w.PushSequence())
        {
            using (w.PushSequence(new Asn1Tag(TagClass.ContextSpecific, 0, isConstructed: true)))
                foreach (var d in domains)
                    using (w.PushSequence())
                        w.WriteCharacterString(UniversalTagNumber.IA5String, d.TrimStart('.').ToLowerInvariant(), new Asn1Tag(TagClass.ContextSpecific, 2));
            // Excluded: every IPv4 and IPv6 address, so the CA cannot vouch for IP literals either.
            using (w.PushSequence(new Asn1Tag(TagClass.ContextSpecific, 1, isConstructed: true)))
            {
                using (w.PushSequence()) w.WriteOctetString(new byte[8], new Asn1Tag(TagClass.ContextSpecific, 7));
                using (w.PushSequence()) w.WriteOctetString(new byte[32], new Asn1Tag(TagClass.ContextSpecific, 7));
            }
        }
        return new X509Extension(Oid, w.Encode(), critical: true);
    }

    /// <summary>The permitted dNSName subtrees and whether IP addresses are excluded; empty when there is no such extension.</summary>
    public static (IReadOnlyList<string> Domains, bool ExcludesIps) Read(X509Certificate2 cert)
    {
        var ext = cert.Extensions[Oid];
        if (ext is null) return ([], false);
        var domains = new List<string>();
        bool excludesIps = false;
        try
        {
            var r = new AsnReader(ext.RawData, AsnEncodingRules.DER).ReadSequence();
            while (r.HasData)
            {
                var tag = r.PeekTag();
                var subtrees = r.ReadSequence(tag);
                while (subtrees.HasData)
                {
                    var subtree = subtrees.ReadSequence();
                    var nameTag = subtree.PeekTag();
                    if (tag.TagValue == 0 && nameTag.TagClass == TagClass.ContextSpecific && nameTag.TagValue == 2)
                        domains.Add(subtree.ReadCharacterString(UniversalTagNumber.IA5String, nameTag));
                    else if (tag.TagValue == 1 && nameTag.TagClass == TagClass.ContextSpecific && nameTag.TagValue == 7)
                        excludesIps = true;
                    else subtree.ReadEncodedValue();
                }
            }
        }
        catch (AsnContentException) { }
        return (domains, excludesIps);
    }
}
