"""The HBN contrast-change-detection data: the montage, the BIDS layout, the events and the
official trial logic, and a synthetic generator that writes data in the same layout."""
