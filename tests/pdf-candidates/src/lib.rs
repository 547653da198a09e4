//! The candidates' page-by-page text extraction, behind one signature: the pages' texts in order.

/// What ingest ships: lopdf, page by page (`shared::ingest::pdf`), its paragraphs joined per page.
pub fn lopdf(bytes: &[u8]) -> Result<Vec<String>, String> {
    let extracted = shared::ingest::pdf::extract(bytes).map_err(|e| e.to_string())?;
    let mut pages: Vec<String> = Vec::new();
    let mut last = None;
    for block in &extracted.blocks {
        if block.page != last {
            pages.push(String::new());
            last = block.page;
        }
        let page = pages.last_mut().expect("a page was pushed");
        page.push_str(extracted.block_text(block));
        page.push('\n');
    }
    Ok(pages)
}

/// pdf-extract (on lopdf, with its own font handling and layout).
pub fn pdf_extract(bytes: &[u8]) -> Result<Vec<String>, String> {
    pdf_extract::extract_text_from_mem_by_pages(bytes).map_err(|e| e.to_string())
}

/// pdf_oxide (its own parser).
pub fn pdf_oxide(bytes: &[u8]) -> Result<Vec<String>, String> {
    let document =
        pdf_oxide::PdfDocument::from_bytes(bytes.to_vec()).map_err(|e| e.to_string())?;
    let pages = document.page_count().map_err(|e| e.to_string())?;
    (0..pages)
        .map(|page| document.extract_text(page).map_err(|e| e.to_string()))
        .collect()
}
